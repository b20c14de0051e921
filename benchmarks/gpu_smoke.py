"""GPU smoke test: every GPU path present on this machine, one table, non-zero exit on any failure.

    .venv/bin/python benchmarks/gpu_smoke.py [--model edgeopt.zoo.resnet:resnet18] [--iterations 200]

Builds the model's fp32 ONNX export and its fp16 and int8-static (Q/DQ, seeded random calibration)
variants, then runs, in this process: the PyTorch runner on CUDA (eager fp32/fp16/bf16,
torch.compile fp16, CUDA graphs fp16), ONNX Runtime with the CUDA and TensorRT execution providers
(fp32, fp16), and native TensorRT engines (fp32, fp16, int8).  A path whose runtime or GPU is absent is
reported ``unavailable: <reason>`` and does not fail the run; a path that is present and fails does.
This is a smoke test (fixed iteration count, in-process), not an edgeopt measurement: use
``edgeopt run`` with a GPU profile for gated numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from edgeopt.backends import availability, runner_for
from edgeopt.models.calibration import CalibrationSet, InputSpec
from edgeopt.models.export import export_onnx, random_feeds
from edgeopt.models.modelref import factory_input_specs, load_entry_point
from edgeopt.models.quantize import Recipe, make_variant

Row = dict[str, Any]


def _time(call: Callable[[], Any], iterations: int, warmup: int = 20) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    ordered = np.sort(np.asarray(samples, dtype=np.float64)) / 1e6
    rank = lambda q: ordered[min(len(ordered) - 1, int(np.ceil(q * len(ordered))) - 1)]  # noqa: E731
    return float(rank(0.50)), float(rank(0.95))


def _memory(details: dict[str, Any]) -> str:
    if "cuda_memory" in details:
        return f"{details['cuda_memory'].get('max_memory_allocated_mb', 0):.0f} MB (torch peak)"
    if "gpu_memory" in details:
        g = details["gpu_memory"]
        return f"{g['engine_device_memory_mb']:.0f} MB engine, +{g['device_used_delta_mb']:.0f} MB device"
    return "-"


def run_row(backend: str, label: str, precision: str, model: str, settings: dict[str, Any],
            feeds: dict[str, np.ndarray], iterations: int) -> Row:
    row: Row = {"backend": label, "precision": precision, "p50 ms": "-", "p95 ms": "-", "memory": "-"}
    try:
        with runner_for(backend, model, settings) as runner:
            runner.infer(feeds)
            p50, p95 = _time(runner.timed_call(feeds), iterations)
            row.update({"p50 ms": f"{p50:.3f}", "p95 ms": f"{p95:.3f}", "memory": _memory(runner.details),
                        "status": "ok"})
            if runner.details.get("cpu_fallback_nodes"):
                row["status"] = f"ok; CPU fallback: {len(runner.details['cpu_fallback_nodes'])} nodes"
    except Exception as error:  # a smoke test reports every failure and goes on
        traceback.print_exc(file=sys.stderr)
        row["status"] = f"FAIL: {type(error).__name__}: {str(error)[:120]}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="edgeopt.zoo.resnet:resnet18")
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args(argv)
    status = availability()
    import torch

    gpu = torch.cuda.is_available()
    specs = factory_input_specs(args.model) or []
    inputs = [(s.name, tuple(s.shape), s.dtype) for s in specs]
    feeds = random_feeds([InputSpec(n, s, d) for n, s, d in inputs], seed=0)
    rows: list[Row] = []

    def unavailable(label: str, precision: str, reason: str) -> None:
        rows.append({"backend": label, "precision": precision, "p50 ms": "-", "p95 ms": "-", "memory": "-",
                     "status": f"unavailable: {reason}"})

    torch_rows: list[tuple[str, str, dict[str, Any]]] = [
        ("torch-cuda eager", "fp32", {}), ("torch-cuda eager", "fp16", {}), ("torch-cuda eager", "bf16", {}),
        ("torch-cuda compile", "fp16", {"mode": "compile"}), ("torch-cuda graphs", "fp16", {"cuda_graphs": True})]
    for label, precision, extra in torch_rows:
        if not gpu:
            unavailable(label, precision, "no CUDA GPU visible to torch")
            continue
        settings = {"device": "cuda", "precision": precision, "inputs": inputs, **extra}
        rows.append(run_row("torch", label, precision, args.model, settings, feeds, args.iterations))

    with tempfile.TemporaryDirectory(prefix="edgeopt-gpu-smoke-") as tmp:
        work = Path(tmp)
        variants: dict[str, Path] = {}
        try:
            exported = export_onnx(load_entry_point(args.model)(), specs, work / "model.onnx", source=args.model)
            variants["fp32"] = exported.path
            variants["fp16"] = make_variant(exported.path, Recipe.parse("fp16"), work / "variants").path
            calibration = CalibrationSet(name="seeded-random", source="gpu_smoke",
                                         samples=tuple(random_feeds(specs, seed=i) for i in range(8)))
            variants["int8-static"] = make_variant(exported.path, Recipe.parse("int8-static"), work / "variants",
                                                   calibration=calibration).path
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            rows.append({"backend": "export/variants", "precision": "-", "p50 ms": "-", "p95 ms": "-",
                         "memory": "-", "status": f"FAIL: {type(error).__name__}: {str(error)[:120]}"})
        import onnxruntime as ort

        providers = ort.get_available_providers()
        for provider, precision in [("CUDAExecutionProvider", "fp32"), ("TensorrtExecutionProvider", "fp32"),
                                    ("TensorrtExecutionProvider", "fp16")]:
            label = f"onnxruntime {provider.removesuffix('ExecutionProvider')} EP"
            if provider not in providers or "fp32" not in variants:
                unavailable(label, precision, f"{provider} not in this onnxruntime build (pip install edgeopt[gpu])")
                continue
            from edgeopt.backends.tensorrt_plan import ort_gpu_provider_options

            pairs = ort_gpu_provider_options([provider], None, precision, work / "ort-cache")
            settings = {"provider_options": pairs, "intra_op_threads": 1, "inter_op_threads": 1,
                        "graph_optimization_level": "all", "cache_dir": str(work / "ort-cache")}
            rows.append(run_row("onnxruntime-gpu", label, precision, str(variants["fp32"]), settings, feeds,
                                args.iterations))
        for precision, kind in [("fp32", "fp32"), ("fp16", "fp32"), ("int8", "int8-static")]:
            if status["tensorrt"] != "available":
                unavailable("tensorrt", precision, status["tensorrt"].removeprefix("unavailable: "))
                continue
            if kind not in variants:
                unavailable("tensorrt", precision, "variant could not be made (see above)")
                continue
            import tensorrt as trt

            family = int(trt.__version__.split(".")[0])
            if family >= 11 and precision == "fp16":
                kind = "fp16"  # no FP16 flag in 11.x: the strongly typed fp16 variant
            settings = {"precision": precision, "variant_kind": kind, "cache_dir": str(work / "trt-cache"),
                        "tensorrt": {"version_family": family, "precisions": ["fp32", "fp16", "int8"]},
                        "input_shapes": {k: list(v.shape) for k, v in feeds.items()}}
            rows.append(run_row("tensorrt", "tensorrt", precision, str(variants[kind]), settings, feeds,
                                args.iterations))

    print(f"GPU smoke on {torch.cuda.get_device_name(0) if gpu else 'a machine without a CUDA GPU'}; "
          f"{args.iterations} timed calls per row, host wall clock, in-process")
    print(tabulate(rows, headers="keys"))
    failed = [r for r in rows if str(r["status"]).startswith("FAIL")]
    print(f"{len(failed)} failed, {sum(str(r['status']).startswith('ok') for r in rows)} ok, "
          f"{sum(str(r['status']).startswith('unavailable') for r in rows)} unavailable")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
