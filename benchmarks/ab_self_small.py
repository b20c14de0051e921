"""A/A check of ``edgeopt ab`` on a small model (not part of CI; about 30 s).

Runs ``run_ab`` of the 0.13 ms two-convolution test model (``tests/test_ab.py:medium_model``) against
itself, under two profiles with the same session settings, N times for 1 s each, and prints each run's
p50/p95 ratio, interval and verdict (thresholds p50:5% p95:5%), then the count of wrong verdicts
(regressed or improved).  This is the figure docs/regressions.md quotes for the re-opened segments:
``.venv/bin/python benchmarks/ab_self_small.py [--times 12]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeopt.profiles.schema import load_profile  # noqa: E402
from edgeopt.workflows.ab import run_ab  # noqa: E402
from tests.test_ab import medium_model, write_profile  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeopt-aa-") as scratch:
        folder = Path(scratch)
        model = medium_model(folder / "base.onnx")
        profile = load_profile(write_profile(folder, "abfast", 2.0))
        other = load_profile(write_profile(folder, "abother", 1.0))
        wrong = 0
        for index in range(args.times):
            result = run_ab(model, model, profile, profile_b=other, max_seconds=1.0)
            cells = [f"{row.statistic} {row.ratio:.3f} [{row.lower:.3f}, {row.upper:.3f}] {row.verdict}"
                     for row in result.rows]
            wrong += any(row.verdict in ("regressed", "improved") for row in result.rows)
            print(f"#{index}: {'; '.join(cells)}; {result.document['segment_count']} segments", flush=True)
    print(f"wrong verdicts (regressed or improved) on the same model: {wrong}/{args.times}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
