"""Print the docs/conformance.md results table from the run folders test_conformance.py leaves in the cache.

    .venv/bin/python tests/conformance/table.py [--cache DIR]

One line per model: the timed input shapes, fp32 p50 on ONNX Runtime, and for every other row its speed-up
and fidelity (the worst figure across outputs) or its one-line reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conformance import corpus, fetch  # noqa: E402


def _fidelity(row: dict) -> str:
    from edgeopt.evaluate.fidelity import OutputFidelity, worst

    figures = worst([OutputFidelity.from_dict(f) for f in row.get("fidelity") or []])
    parts = [f"cos {figures['cosine']:.3f}"] if "cosine" in figures else []
    parts += [f"top1 {100 * figures['top1']:.0f}%"] if "top1" in figures else []
    parts += [f"dec {100 * figures['decision']:.0f}%"] if "decision" in figures else []
    return ", ".join(parts) or "-"


def _cell(row: dict) -> str:
    if row["status"] != "ok":
        reason = str(row.get("failure") or row["status"])
        return f"{row['status']}: {reason[:110]}"
    speed = row.get("speedup")
    return f"{speed[0]:.2f}x, {_fidelity(row)}, {row['verdict']}" if speed else f"{_fidelity(row)}, {row['verdict']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = fetch.resolve_cache(args.cache) / "runs"
    print("| model | timed inputs | fp32 ORT p50 ms | other rows: speed-up vs fp32, worst fidelity, verdict "
          "(or reason) |")
    print("|---|---|---|---|")
    for entry in corpus.ENTRIES:
        summary_path = runs / entry.name / "summary.json"
        if not summary_path.is_file():
            print(f"| {entry.name} | not run | | |")
            continue
        summary = json.loads(summary_path.read_text())
        rows = {row["variant"]: row for row in summary["rows"]}
        measurement = json.loads((runs / entry.name / "measurements" / "fp32__conformance.json").read_text())
        shapes = ", ".join(f"{n} {'x'.join(map(str, s)) or 'scalar'}" for n, s in measurement["input_shapes"].items())
        p50 = rows["fp32"]["p50_ms"]["value"]
        others = "<br>".join(f"`{name}`: {_cell(row)}" for name, row in rows.items() if name != "fp32")
        print(f"| {entry.name} | {shapes} | {p50:.3g} | {others} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
