"""Acceptance figures for regression gating on this machine (not part of CI; takes ~10 minutes).

1. ``edgeopt ab`` of the default image model (fp32 ResNet-18 from ``bench.py``) against itself, N times:
   how often the verdict is "unchanged".
2. ``edgeopt ab`` against a copy made deliberately slower (an extra 7x7 convolution on the input whose
   result is multiplied by zero and added to the logits: ~25% more MACs, same outputs), N times: how often
   the verdict is "regressed".
3. ``edgeopt rerun`` of a stored measurement of the default model, N times: how often p95 agrees within ±2%.

Run ``bash scripts/bench.sh`` first (it makes ``bench-out/resnet18``), then
``.venv/bin/python benchmarks/ab_acceptance.py [--times 10]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "x86-avx512vnni-2core"


def slower_copy(source: Path, target: Path) -> Path:
    """``source`` plus a dead-weight 7x7 convolution on its input (x0 added to the first output)."""
    model = onnx.load(str(source))
    graph = model.graph
    first_input = graph.input[0].name
    output = graph.output[0].name
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 3, 7, 7)).astype(np.float32), "slow.w")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "slow.zero")
    graph.initializer.extend([weight, zero])
    for node in graph.node:  # rename the original output so the new Add can write it
        node.output[:] = [f"{output}.orig" if o == output else o for o in node.output]
    graph.node.extend([
        helper.make_node("Conv", [first_input, "slow.w"], ["slow.conv"], pads=[3, 3, 3, 3], name="slow_conv"),
        helper.make_node("ReduceMean", ["slow.conv"], ["slow.mean"], keepdims=0, name="slow_mean"),
        helper.make_node("Mul", ["slow.mean", "slow.zero"], ["slow.dead"], name="slow_mul"),
        helper.make_node("Add", [f"{output}.orig", "slow.dead"], [output], name="slow_add"),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def edgeopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeopt", *args], capture_output=True, text=True, cwd=ROOT)


def ab_verdicts(base: Path, candidate: Path, out: Path, times: int) -> list[dict[str, str]]:
    verdicts = []
    for index in range(times):
        result = edgeopt("ab", str(base), str(candidate), "--profile", PROFILE, "--out", str(out / f"run{index}"))
        document = json.loads(next((out / f"run{index}").glob("*.json")).read_text())
        rows = {row["statistic"]: row for row in document["rows"]}
        verdicts.append({s: f"{rows[s]['verdict']} {rows[s]['ratio']:.3f} [{rows[s]['lower']:.3f}, "
                            f"{rows[s]['upper']:.3f}]" for s in rows} | {"exit": str(result.returncode),
                                                                    "segments": str(document["segment_count"])})
        print(f"  {candidate.name} #{index}: {verdicts[-1]}", flush=True)
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "acceptance")
    args = parser.parse_args()
    base = ROOT / "bench-out" / "resnet18" / "variants" / "fp32.onnx"
    if not base.exists():
        print("run `bash scripts/bench.sh` first: bench-out/resnet18/variants/fp32.onnx is missing")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    slow = slower_copy(base, args.out / "fp32-slower.onnx")
    print("1. ab of the default model against itself")
    same = ab_verdicts(base, base, args.out / "same", args.times)
    print("2. ab against the deliberately slower copy")
    slower = ab_verdicts(base, slow, args.out / "slower", args.times)
    print("3. rerun of a stored measurement")
    stored = ROOT / "bench-out" / "resnet18" / "measurements" / f"fp32__{PROFILE}.json"
    rerun = edgeopt("rerun", str(stored), "--times", str(args.times))
    print(rerun.stdout[-3000:])
    unchanged = sum("unchanged" in v.get("p95", "") and "unchanged" in v.get("p50", "") for v in same)
    regressed = sum("regressed" in v.get("p95", "") or "regressed" in v.get("p50", "") for v in slower)
    print(f"same model: {unchanged}/{args.times} unchanged (p50 and p95); slower copy: {regressed}/{args.times} "
          "regressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
