"""Overhead of the device lab (issue 14 item 6): does a Ray node on a board distort its measurements?

On this machine: a local Ray cluster (head + one node joined, as ``edgeopt lab join`` would, as the profile this
host is), then the default image model (fp32 ResNet-18-class, ``edgeopt.zoo.resnet:resnet18``) measured with
``edgeopt run`` here and with ``edgeopt lab run`` on the node, alternating, ``--rounds`` times each; prints the p50
of every run, the ratio of the medians (lab / local; target <= 1.02) and the CPU use of all Ray processes while
the lab is idle.  Not part of CI (about 4 minutes on 2 cores with --rounds 2).

    .venv/bin/python benchmarks/lab_overhead.py [--rounds 3] [--profile NAME] [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

EDGEOPT = [sys.executable, "-m", "edgeopt"]


def p50_of(out: Path) -> float:
    document = json.loads(next((out / "measurements").glob("fp32__*.json")).read_text())
    return float(document["latency"]["summary_ms"]["percentiles"]["p50"]["value"])


def ray_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if "/ray/" in line or "ray::" in line or "raylet" in line or "gcs_server" in line:
            found.append(process)
    return found


def idle_cpu(seconds: float) -> float:
    """CPU use of every Ray process over ``seconds``, in % of one core."""
    processes = ray_processes()
    for p in processes:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(seconds)
    total = 0.0
    for p in processes:
        try:
            total += p.cpu_percent(None)
        except psutil.Error:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="the profile to join as and measure on (default: the first this host is)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    from edgeopt.lab.cluster import plan_join

    plan = plan_join([args.profile] if args.profile else None)
    profile = plan.profiles[0]
    work = Path(tempfile.mkdtemp(prefix="edgeopt-lab-overhead-"))
    model = work / "resnet18.onnx"
    subprocess.run(EDGEOPT + ["export", "edgeopt.zoo.resnet:resnet18", "--out", str(model)], check=True,
                   capture_output=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=0, resources=plan.resources)
        cluster.wait_for_nodes()
        time.sleep(3.0)  # let the node's start-up settle
        cpu = idle_cpu(args.idle_seconds)
        local: list[float] = []
        lab: list[float] = []
        common = [str(model), "--profile", profile, "--variant", "fp32", "--force"]
        for index in range(args.rounds):
            for kind in ("local", "lab"):
                out = work / f"{kind}-{index}"
                command = EDGEOPT + (["run", *common, "--out", str(out)] if kind == "local" else
                                     ["lab", "run", *common, "--out", str(out), "--address", cluster.address])
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode not in (0, 1, 5):
                    print(done.stdout + done.stderr, file=sys.stderr)
                    return 4
                value = p50_of(out)
                (local if kind == "local" else lab).append(value)
                print(f"round {index + 1} {kind:5} p50 {value:.3f} ms")
    finally:
        cluster.shutdown()
    ratio = statistics.median(lab) / statistics.median(local)
    print(f"profile {profile}; {args.rounds} rounds; median p50 local {statistics.median(local):.3f} ms, "
          f"lab {statistics.median(lab):.3f} ms; ratio lab/local {ratio:.4f} (target <= 1.02)")
    print(f"Ray processes (head + node, idle, {args.idle_seconds:g} s): {cpu:.1f}% of one core")
    return 0 if ratio <= 1.02 else 1


if __name__ == "__main__":
    sys.exit(main())
