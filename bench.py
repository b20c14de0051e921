#!/usr/bin/env python3
"""The main job: the embedded default models through export → variants → measurement → gate → table.

Two models, both defined in the project:
  (a) a ResNet-18-class image model (224x224, seeded weights), calibrated on the shipped photos,
      for the latency story;
  (b) a small CNN trained here on the shipped real handwritten digits, whose task accuracy on
      360 held-out digits (bootstrap interval, paired change vs fp32) is reported for every variant,
      clean and under brightness/contrast/noise/blur shifts (docs/evaluation.md).
The hardware profile is the first shipped profile whose identity this host matches (falling back
to host-cpu); the reason is printed.  Exit code: see README ("Exit codes").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgeopt.cli import output
from edgeopt.core.fileio import read_json
from edgeopt.core.host import host_fingerprint
from edgeopt.errors import EdgeoptError
from edgeopt.evaluate.gate import exit_code_for
from edgeopt.profiles.schema import list_profiles, load_profile, match_identity
from edgeopt.workflows.pipeline import RunConfig, run_pipeline

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "calibration_data"


def choose_profile(requested: str | None) -> tuple[str, str]:
    """The profile to judge against, and why."""
    host = host_fingerprint()
    if requested:
        return requested, "requested with --profile"
    rejected = []
    for profile in list_profiles():
        if profile.identity.any_host:
            continue
        match = match_identity(profile, host)
        if match.matches:
            return profile.name, f"this host ({host.summary()}) matches its identity: {'; '.join(match.reasons)}"
        rejected.append(f"{profile.name} ({match.reasons[0]})")
    return "host-cpu", f"no specific profile matches this host ({host.summary()}): " + ", ".join(rejected)


def latency_job_skips(fp16_native: bool) -> tuple[str, ...]:
    """Default variants the ResNet latency job leaves out (the digits job measures every one, with accuracy):
    the entropy/percentile calibrations (the same graph as minmax with other scales, so the same latency);
    int8-dynamic (ONNX Runtime's quantization guide, "Method selection": dynamic quantization for RNNs and
    transformers, static for CNNs; its ConvInteger ResNet ran at 0.44x fp32, 223 ms, the slowest row at 28 s);
    and, where the target has no native FP16, fp16 (fp32's speed there with half the file: 95 vs 96 ms).
    Measured on a 2-vCPU AMD EPYC (AVX2, no VNNI), 2026-11-30/12-01."""
    return ("int8-dynamic", "int8-static-entropy", "int8-static-percentile", *(() if fp16_native else ("fp16",)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--profile", help="profile name or YAML path (default: the one matching this host)")
    parser.add_argument("--proxy", action="store_true", help="judge a profile this host is not, as a labelled proxy")
    parser.add_argument("--force", action="store_true", help="redo everything instead of resuming")
    args = parser.parse_args()
    with output.configured(stream=sys.stdout, fmt="  %(message)s"):  # step lines indented under each job's title
        return run(args)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    profile_name, reason = choose_profile(args.profile)
    profile = load_profile(profile_name)
    print(f"profile: {profile_name} - {reason}", flush=True)
    jobs = [
        RunConfig(model="edgeopt.zoo.resnet:resnet18", profiles=(profile_name,), out_dir=args.out / "resnet18",
                  calibration=str(DATA / "images"), proxy=args.proxy, force=args.force,
                  skip_variants=latency_job_skips(profile.expects_fast("fp16", host_fingerprint()))),
        RunConfig(model="edgeopt.zoo.digits:digits_cnn", profiles=(profile_name,), out_dir=args.out / "digits",
                  calibration=str(DATA / "digits"), eval_set=str(DATA / "digits" / "eval.npz"), proxy=args.proxy,
                  force=args.force, shifts=("all",)),
    ]
    gates, failures = [], 0
    for config in jobs:
        print(f"\n== {config.model} ==", flush=True)
        try:
            result = run_pipeline(config)
        except EdgeoptError as error:
            print(f"edgeopt: error: {error}", file=sys.stderr)
            return error.exit_code
        for table in result.tables:
            print(table)
        for recommendation in read_json(result.summary_path).get("recommendations", []):
            print(recommendation["line"])
        gates += result.gates
        failures += len(result.variant_failures) + sum(1 for m in result.measurements if not m.ok)
        print(f"reports: {result.summary_path} and {result.markdown_path.name} beside it")
    code = exit_code_for(gates, failures=failures)
    counts: dict[str, int] = {}
    for gate in gates:
        counts[gate.verdict.value] = counts.get(gate.verdict.value, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "nothing judged"
    word = {0: "PASS", 1: "FAIL", 5: "INCONCLUSIVE OR INVALID"}.get(code, "ERROR")
    print(f"\nverdict: {word} (exit {code}) on {profile_name}: {summary}"
          + (f", {failures} failed to build or measure" if failures else "")
          + f"; {time.perf_counter() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
