"""Regenerate the published JSON Schemas from the pydantic models (``edgeopt.cli.schemas``).

    .venv/bin/python scripts/json_schemas.py          # write edgeopt/schemas/*.schema.json and docs/schemas/
    .venv/bin/python scripts/json_schemas.py --check  # exit 1 naming each file that is out of date

Run it after changing ``HardwareProfile``, ``Measurement`` or ``RunSummary``; ``tests/test_json_schemas.py``
fails until the files match the models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeopt.cli.schemas import SCHEMAS, schema_file_name, schema_text

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = (ROOT / "edgeopt" / "schemas", ROOT / "docs" / "schemas")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ (default: write them)")
    args = parser.parse_args(argv)
    stale = []
    for folder in FOLDERS:
        for name in SCHEMAS:
            path, text = folder / schema_file_name(name), schema_text(name)
            current = path.read_text(encoding="utf-8") if path.is_file() else None
            if current == text:
                continue
            stale.append(path)
            if not args.check:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
