#!/usr/bin/env python3
"""Is the worker's live progress latency-neutral?  p50 with the job's ``progress`` set (progress lines on stdout at
the stop rule's checkpoints, read by the launcher's thread) vs without: the real worker job of
``edgeopt.measure.cell.measure_cell`` (``worker_job``), run by ``edgeopt.measure.launcher.run_worker`` with and without
``on_progress`` (``measure_cell`` itself always asks for progress, so it cannot run the "off" arm).

Two models: the tiny near-empty ``Add`` (call overhead dominates: the worst case for anything added to the loop)
and the default ResNet-18-class fp32 export (``edgeopt.zoo.resnet:resnet18``, bench.py's latency model; exported
once into ``--work``).  The arms alternate (off on, on off, ...) so drift lands on both.  Each measurement runs its
profile's loop to the time cap (the CI target is set out of reach, so every checkpoint is reached and reported).

    .venv/bin/python benchmarks/progress_neutrality.py [--rounds 4] [--work .cache/progress-neutrality]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.models import near_empty_model  # noqa: E402
from edgeopt.measure.cell import Cell, CellContext, cell_session, worker_job  # noqa: E402
from edgeopt.measure.launcher import prepare_timing_inputs, run_worker, worker_memory_cap  # noqa: E402
from edgeopt.measure.results import Latency  # noqa: E402
from edgeopt.models.quantize import make_variant  # noqa: E402
from edgeopt.models.recipes import Recipe  # noqa: E402
from edgeopt.profiles.schema import load_profile  # noqa: E402
from tests.profiles import profile_yaml  # noqa: E402


def profile_file(directory: Path, name: str, seconds: float, min_iterations: int) -> Path:
    text = profile_yaml(name, max_seconds=seconds, min_iterations=min_iterations, warmup_iterations=10).replace(
        f"  max_seconds: {seconds}\n", f"  max_seconds: {seconds}\n  target_ci_rel: 0.00001\n")
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def p50s(model: Path, profile_path: Path, work: Path, rounds: int) -> dict[str, list[float]]:
    profile = load_profile(str(profile_path))
    variant = make_variant(model, Recipe.parse("fp32"), work / "variants")
    timing = prepare_timing_inputs(model, profile, None, work / "inputs.npz")
    cell, context = Cell(variant, profile, timing), CellContext(work / "measurements")
    job = worker_job(cell, context, cell_session(cell, context))  # the job measure_cell runs
    seen: dict[str, list[float]] = {"off": [], "on": []}
    updates: list[dict[str, object]] = []
    for index in range(rounds):
        for arm in (("off", "on") if index % 2 == 0 else ("on", "off")):
            run = run_worker("edgeopt.measure.worker", job, profile.bench.worker_timeout_s,
                             memory_cap=worker_memory_cap(profile), on_progress=updates.append if arm == "on" else None)
            result = run.result
            assert result is not None and result.get("status") == "ok", (run.returncode, run.stderr_tail, result)
            latency = Latency.from_samples(result["samples_ns"], result["stop_reason"], result["loop_wall_ns"],
                                           profile.bench.confidence)
            seen[arm].append(latency.summary().percentiles["p50"].value)
    assert updates, "no progress line came back"
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating pairs per model (default: 4)")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "progress-neutrality")
    parser.add_argument("--skip-resnet", action="store_true", help="the tiny model only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cases = [("near-empty Add", near_empty_model(args.work / "tiny" / "near_empty.onnx"),
              profile_file(args.work, "tiny", 1.0, 100), args.work / "tiny")]
    if not args.skip_resnet:
        resnet = args.work / "resnet" / "resnet18.onnx"
        if not resnet.exists():  # the CLI exports it (torch), once
            subprocess.run([sys.executable, "-m", "edgeopt", "export", "edgeopt.zoo.resnet:resnet18", "--out",
                            str(resnet)], check=True)
        cases.append(("ResNet-18-class fp32", resnet, profile_file(args.work, "resnet", 12.0, 20),
                      args.work / "resnet"))
    for label, model, profile, work in cases:
        seen = p50s(model, profile, work, args.rounds)
        off, on = statistics.median(seen["off"]), statistics.median(seen["on"])
        print(f"{label}: p50 off {off:.4f} ms {[round(v, 4) for v in seen['off']]}, "
              f"on {on:.4f} ms {[round(v, 4) for v in seen['on']]}; on/off {on / off:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
