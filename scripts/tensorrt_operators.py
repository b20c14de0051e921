"""Regenerate edgeopt's TensorRT operator tables from saved copies of onnx-tensorrt's ``docs/operators.md``, offline.

    python scripts/tensorrt_operators.py           # write edgeopt/backends/tensorrt/operators/tensorrt-<v>.json
    python scripts/tensorrt_operators.py --check   # exit 1 when a shipped table differs from what the copies give

``scripts/data/tensorrt_operators/sources.json`` lists the copies: the TensorRT version each documents, the file,
the onnx-tensorrt branch and commit it was taken from, how that commit is tied to the release, and its sha256
(a copy whose hash differs is an error: the table would no longer say where it came from).  Each table records
that provenance, the parser's opset range (the document's header line), the ONNX data types it names, and one
row per operator: supported (Y/N), the types the "Supported Types" column lists, and the restrictions text.
No network: to add a release, save its ``docs/operators.md`` beside the others, add an entry, run this.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COPIES = ROOT / "scripts" / "data" / "tensorrt_operators"
TABLES = ROOT / "edgeopt" / "backends" / "tensorrt" / "operators"
SCHEMA_VERSION = 1

#: The type names operators.md uses in its "Supported Types" column.
TYPE_NAMES = {"FP32", "FP16", "BF16", "FP8", "FP4", "INT4", "INT8", "INT32", "INT64", "UINT8", "BOOL", "DOUBLE"}
#: Misspellings in a published copy, read as the type meant (10.1-GA's ConstantOfShape row says "INF64").
TYPOS = {"INF64": "INT64"}

_HEADER = re.compile(r"TensorRT (\S+) supports operators in the inclusive range of opset (\d+) to opset (\d+)")
_DATA_TYPES = re.compile(r"TensorRT supports the following ONNX data types: (.+)")


class TableError(ValueError):
    """A saved copy does not parse as an operators.md table, or its hash is not the recorded one."""


def _types_and_rest(cell: str) -> tuple[list[str], str]:
    """The type names a "Supported Types" cell lists, and any text in it that is not a type name."""
    types, rest = [], []
    for token in (t.strip() for t in cell.split(",")):
        token = TYPOS.get(token, token)
        if token in TYPE_NAMES:
            types.append(token)
        elif token:
            rest.append(token)
    return types, ", ".join(rest)


def parse_operators_md(text: str, source: str) -> dict[str, Any]:
    """The header (opset range), the data types line and the operator rows of one operators.md."""
    header = _HEADER.search(text)
    if header is None:
        raise TableError(f"{source}: no 'TensorRT X supports operators in the inclusive range of opset A to opset B'")
    data_types = _DATA_TYPES.search(text)
    operators: dict[str, dict[str, Any]] = {}
    in_table = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("## "):
            in_table = stripped == "## Operator Support Matrix"
            continue
        if not in_table or not stripped.startswith("|"):
            continue
        cells = [c.strip() for c in stripped.strip("|").split("|")]
        name = cells[0]
        if name == "Operator" or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            continue  # the header row and the |---| rule
        if len(cells) < 2 or cells[1][:1] not in ("Y", "N"):
            raise TableError(f"{source}: row {name!r} has no Y/N in its Supported column: {line!r}")
        types, extra = _types_and_rest(cells[2] if len(cells) > 2 else "")
        restrictions = " ".join(part for part in (extra, " | ".join(c for c in cells[3:] if c)) if part)
        if name in operators:
            raise TableError(f"{source}: operator {name} listed twice")
        operators[name] = {"supported": cells[1].startswith("Y"), "types": types, "restrictions": restrictions}
    if not operators:
        raise TableError(f"{source}: no rows under '## Operator Support Matrix'")
    return {
        "header": header.group(0) + ".",
        "opset": {"min": int(header.group(2)), "max": int(header.group(3))},
        "data_types": [TYPOS.get(t, t) for t in re.split(r",\s*(?:and\s+)?|\s+and\s+", data_types.group(1).strip())]
        if data_types else [],
        "operators": operators,
    }


def build_table(entry: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    copy = COPIES / entry["file"]
    data = copy.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise TableError(f"{copy}: sha256 {digest}, sources.json records {entry['sha256']}")
    parsed = parse_operators_md(data.decode("utf-8"), str(copy))
    supported = sum(1 for row in parsed["operators"].values() if row["supported"])
    return {
        "schema_version": SCHEMA_VERSION,
        "tensorrt": entry["version"],
        "source": {
            "repository": manifest["repository"],
            "path": manifest["path"],
            "branch": entry["branch"],
            "commit": entry["commit"],
            "release": entry["release"],
            "saved_copy": str(copy.relative_to(ROOT)),
            "sha256": digest,
        },
        "note": entry.get("note", ""),
        "generated_by": "scripts/tensorrt_operators.py",
        "header": parsed["header"],
        "opset": parsed["opset"],
        "data_types": parsed["data_types"],
        "counts": {"operators": len(parsed["operators"]), "supported": supported},
        "operators": parsed["operators"],
    }


def render(table: dict[str, Any]) -> str:
    """JSON with one line per operator, so a regenerated table diffs row by row."""
    head = {k: v for k, v in table.items() if k != "operators"}
    opening = json.dumps(head, indent=2, ensure_ascii=False)
    lines = opening[: -len("\n}")] + ',\n  "operators": {\n'  # json.dumps(indent=2) ends a dict with "\n}"
    rows = [f"    {json.dumps(name)}: {json.dumps(row, ensure_ascii=False)}"
            for name, row in table["operators"].items()]
    return lines + ",\n".join(rows) + "\n  }\n}\n"


def table_path(version: str) -> Path:
    return TABLES / f"tensorrt-{version}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped tables; write nothing")
    args = parser.parse_args(argv)
    manifest = json.loads((COPIES / "sources.json").read_text())
    stale = 0
    expected = set()
    for entry in manifest["copies"]:
        table = build_table(entry, manifest)
        target = table_path(entry["version"])
        expected.add(target.name)
        text = render(table)
        json.loads(text)  # the hand-laid layout is still JSON
        counts = table["counts"]
        summary = (f"TensorRT {entry['version']}: opset {table['opset']['min']}..{table['opset']['max']}, "
                   f"{counts['operators']} operators ({counts['supported']} supported) from {entry['file']} "
                   f"@ {entry['commit'][:12]}")
        if args.check:
            same = target.exists() and target.read_text() == text
            stale += not same
            print(f"{'ok   ' if same else 'STALE'} {target.relative_to(ROOT)}: {summary}")
        else:
            TABLES.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}: {summary}")
    extra = sorted(p.name for p in TABLES.glob("tensorrt-*.json") if p.name not in expected) if TABLES.exists() else []
    for name in extra:
        print(f"{'STALE' if args.check else 'note '} {name}: not in sources.json (remove it, or add its copy)")
    return 1 if args.check and (stale or extra) else 0


if __name__ == "__main__":
    sys.exit(main())
