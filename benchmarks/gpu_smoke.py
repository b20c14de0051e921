"""GPU smoke test: every GPU path present on this machine, one table, non-zero exit on any failure.

    .venv/bin/python benchmarks/gpu_smoke.py [--model edgeopt.zoo.resnet:resnet18] [--iterations 200]

Builds the model's fp32 ONNX export and its fp16 and TensorRT-bound INT8 (``int8-trt-qdq``: symmetric
Q/DQ, seeded random calibration) variants, then runs, in this process: the PyTorch runner on CUDA (eager
fp32/fp16/bf16, torch.compile fp16, CUDA graphs fp16), ONNX Runtime with the CUDA and TensorRT execution
providers (fp32, fp16), and native TensorRT engines (fp32, fp16, int8).  A path whose runtime or GPU is
absent is reported ``unavailable: <reason>`` and does not fail the run; a path that is present and fails does.

Golden outputs (issue 15 item 5): for each TensorRT-bound variant the script writes reference inputs and
ONNX Runtime CPU outputs in Polygraphy's format (``edgeopt.backends.tensorrt.goldens``; kept with
``--goldens-out DIR``), and where TensorRT is installed it builds the INT8 engine from the Q/DQ file
(strongly typed, as ``plan_build`` plans it on 10.x and 11.x) with ``ProfilingVerbosity.DETAILED``, counts the
layers the engine inspector reports with INT8 tensors (fails when none: TensorRT ran it in float), runs the
goldens' inputs through that very engine (stored in the runner's engine cache under the runner's key) and
compares the outputs with the goldens at the INT8 tolerances (``recommended_tolerances``).

This is a smoke test (fixed iteration count, in-process), not an edgeopt measurement: use
``edgeopt run`` with a GPU profile for gated numbers.
"""

from __future__ import annotations

import argparse
import json
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
from edgeopt.backends.tensorrt.goldens import compare_outputs, read_goldens, recommended_tolerances, write_goldens
from edgeopt.core.fileio import sha256_file, write_bytes_atomic
from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.export import export_onnx, random_feeds
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.modelref import factory_input_specs, load_entry_point
from edgeopt.models.quantize import make_variant
from edgeopt.models.recipes import Recipe

Row = dict[str, Any]
TRT_BOUND = ("int8-trt-qdq",)  # the TensorRT-bound variants: goldens and an INT8 check for each
GOLDEN_ITERATIONS = 4


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


def _tensor_types(tensor: Any) -> str:
    """The type text of one tensor of an engine-inspector layer: ``Format/Datatype`` on TensorRT 10.x
    ("Row major linear FP32 format", "Thirty-two wide channel vectorized row major Int8 format"), split into
    ``Format`` and ``DataType`` on 11.x (docs: "Migrating IEngineInspector Usage from TensorRT 10.x to 11.x")."""
    if not isinstance(tensor, dict):
        return ""
    keys = ("Format/Datatype", "Format/DataType", "DataType", "Datatype", "Format")
    return " ".join(str(tensor[k]) for k in keys if isinstance(tensor.get(k), str))


def int8_layer_report(engine_information: str) -> dict[str, Any]:
    """Layers of an engine (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` of an
    engine built with ``ProfilingVerbosity.DETAILED``) that run on INT8 data.

    ``int8_layers``: layers with an INT8 input or output tensor; ``int8_compute``: those that consume INT8
    inputs and are not reformatting layers (an INT8 kernel was chosen; a Quantize into INT8 alone does
    not count).  Raises ValueError when the text carries no per-layer tensor types (the engine was not
    built DETAILED) so that "no INT8 layer" is never concluded from missing information."""
    document = json.loads(engine_information)
    layers = document.get("Layers") if isinstance(document, dict) else document
    if not isinstance(layers, list):
        raise ValueError("engine information has no 'Layers' list")
    if not any(isinstance(layer, dict) and ("Inputs" in layer or "Outputs" in layer) for layer in layers):
        raise ValueError("engine information lists layer names only: build with ProfilingVerbosity.DETAILED")
    int8, compute = [], []
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        inputs = " ".join(_tensor_types(t) for t in layer.get("Inputs") or []).upper()
        outputs = " ".join(_tensor_types(t) for t in layer.get("Outputs") or []).upper()
        name, kind = str(layer.get("Name", "?")), str(layer.get("LayerType", "?"))
        if "INT8" in inputs or "INT8" in outputs:
            int8.append(f"{name} ({kind})")
            if "INT8" in inputs and "REFORMAT" not in kind.upper():
                compute.append(f"{name} ({kind})")
    return {"layers": len(layers), "int8_layers": int8, "int8_compute": compute}


def write_onnxruntime_goldens(model_path: Path, specs: list[InputSpec], folder: Path, source: str) -> Path:
    """Goldens for ``model_path``: ``GOLDEN_ITERATIONS`` seeded inputs and ONNX Runtime CPU's outputs, with a
    copy of the model as ``model.onnx`` beside them (the folder is self-contained: the polygraphy command in
    its README runs there)."""
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "model.onnx"
    write_bytes_atomic(copy, model_path.read_bytes())
    session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    inputs = [random_feeds(specs, seed=1000 + i) for i in range(GOLDEN_ITERATIONS)]  # not the calibration seeds
    outputs = [dict(zip(names, session.run(None, feed), strict=True)) for feed in inputs]
    write_goldens(folder, inputs, outputs, runner_name="onnxrt-cpu-golden", model_sha256=sha256_file(model_path),
                  note=f"ONNX Runtime {ort.__version__} CPUExecutionProvider, seeded random inputs "
                       f"(seeds 1000..{1000 + GOLDEN_ITERATIONS - 1}), {source}",
                  precision="int8", model_path=copy)
    return folder


def build_inspected_int8_engine(model_path: Path, cache_dir: Path,
                                input_shapes: dict[str, list[int]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the INT8 engine of a Q/DQ file as ``TensorRtRunner`` would (``plan_build``: strongly typed, on
    TensorRT 10 and 11), but with ``ProfilingVerbosity.DETAILED``; store it in the runner's engine cache
    under the runner's key (so the runner runs this very engine) and return (runner settings, INT8 layer
    report).  Type-checked against tensorrt-stubs (``MYPYPATH=<typings> mypy benchmarks/gpu_smoke.py``)."""
    import tensorrt as trt

    from edgeopt.backends.tensorrt.engines import EngineCache, EngineKey
    from edgeopt.backends.tensorrt.plan import plan_build, shape_profile, version_family
    from edgeopt.backends.tensorrt.runner import EngineBuildError, gpu_identity
    from edgeopt.errors import UnsupportedModelError
    from edgeopt.profiles.schema import TensorRtSettings

    section = {"version_family": version_family(trt.__version__), "precisions": ["int8"]}
    settings = TensorRtSettings.model_validate(section)
    ranges = shape_profile(model_path, settings, input_shapes)
    options = plan_build(settings, "int8-static", "int8", trt.__version__, ranges)  # int8-trt-qdq's kind
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if options.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        raise UnsupportedModelError("TensorRT cannot parse the model: " + "; ".join(
            f"node '{e.node_name()}' ({e.node_operator()}): {e.desc()}" for e in errors))
    config = builder.create_builder_config()
    config.builder_optimization_level = options.builder_optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer tensor types for the inspector
    if options.shape_profile:
        profile = builder.create_optimization_profile()
        for r in options.shape_profile:
            profile.set_shape(r.name, trt.Dims(list(r.min)), trt.Dims(list(r.opt)), trt.Dims(list(r.max)))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT built no INT8 engine for {model_path.name} (see the TensorRT log above)")
    data = bytes(memoryview(serialized))
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineBuildError("TensorRT could not deserialise the engine it just built")
    inspector = engine.create_engine_inspector()
    report = int8_layer_report(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    gpu_name, capability = gpu_identity()
    key = EngineKey(sha256_file(model_path), trt.__version__, gpu_name, capability, options)
    EngineCache(cache_dir / "tensorrt-engines").store(key, data, {"profiling_verbosity": "DETAILED"})
    report["engine_key"] = key.digest()
    runner_settings = {"precision": "int8", "variant_kind": "int8-static", "cache_dir": str(cache_dir),
                       "tensorrt": section, "input_shapes": input_shapes}
    return runner_settings, report


def tensorrt_golden_row(variant: str, model_path: Path, goldens: Path, cache_dir: Path) -> Row:
    """Build (INT8 check) and run the variant on TensorRT and compare with its goldens."""
    row: Row = {"backend": f"tensorrt vs goldens ({variant})", "precision": "int8", "p50 ms": "-", "p95 ms": "-",
                "memory": "-"}
    try:
        inputs, golden = read_goldens(goldens)
        shapes = {name: list(value.shape) for name, value in inputs[0].items()}
        settings, report = build_inspected_int8_engine(model_path, cache_dir, shapes)
        compute = report["int8_compute"]
        print(f"{variant}: {len(report['int8_layers'])} of {report['layers']} engine layers have INT8 tensors, "
              f"{len(compute)} consume INT8: {compute[:8]}{' ...' if len(compute) > 8 else ''}", file=sys.stderr)
        if not compute:
            row["status"] = (f"FAIL: no INT8 tactic chosen: none of {report['layers']} layers consumes INT8 "
                             f"(INT8 tensors in {len(report['int8_layers'])})")
            return row
        from edgeopt.backends.tensorrt.runner import TensorRtRunner

        actual = []
        runner = TensorRtRunner(str(model_path), settings)
        with runner:
            if runner.details.get("engine_built") or runner.details.get("engine_key") != report["engine_key"]:
                row["status"] = "FAIL: the runner did not load the inspected engine (engine key differs)"
                return row
            for feed in inputs:
                actual.append(dict(zip(runner.output_names, runner.infer(feed), strict=True)))
        tolerances = recommended_tolerances("int8")
        results = compare_outputs(actual, golden, tolerances)
        for result in results:
            print(f"{variant}: {result.sentence()}", file=sys.stderr)
        bad = [r for r in results if not r.passed]
        verdict = (f"{len(results) - len(bad)}/{len(results)} outputs within {tolerances.check_error_stat} "
                   f"{tolerances.error_quantile} atol {tolerances.atol} / rtol {tolerances.rtol}; INT8 in "
                   f"{len(compute)} of {report['layers']} layers")
        row["status"] = f"FAIL: {verdict}" if bad else f"ok; {verdict}"
    except Exception as error:  # a smoke test reports every failure and goes on
        traceback.print_exc(file=sys.stderr)
        row["status"] = f"FAIL: {type(error).__name__}: {str(error)[:120]}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="edgeopt.zoo.resnet:resnet18")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--goldens-out", type=Path, default=None,
                        help="keep the golden inputs/outputs of each TensorRT-bound variant in DIR/<variant>/ "
                             "(default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    status = availability()
    import torch

    gpu = torch.cuda.is_available()
    declared = factory_input_specs(args.model)
    specs = declared.concrete() if declared is not None else []
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
            for name in TRT_BOUND:  # TensorRT INT8 comes from the TensorRT-bound Q/DQ file only (issue 15)
                variants[name] = make_variant(exported.path, Recipe.parse(name), work / "variants",
                                              calibration=calibration).path
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            rows.append({"backend": "export/variants", "precision": "-", "p50 ms": "-", "p95 ms": "-",
                         "memory": "-", "status": f"FAIL: {type(error).__name__}: {str(error)[:120]}"})
        goldens: dict[str, Path] = {}
        for name in TRT_BOUND:
            row: Row = {"backend": f"goldens ({name})", "precision": "int8", "p50 ms": "-", "p95 ms": "-",
                        "memory": "-"}
            if name not in variants:
                rows.append({**row, "status": "FAIL: variant could not be made (see above)"})
                continue
            folder = (args.goldens_out or work / "goldens") / name
            try:
                goldens[name] = write_onnxruntime_goldens(variants[name], specs, folder, f"edgeopt gpu_smoke {name}")
                rows.append({**row, "status": f"ok; {GOLDEN_ITERATIONS} iterations from onnxruntime CPU in {folder}"})
            except Exception as error:
                traceback.print_exc(file=sys.stderr)
                rows.append({**row, "status": f"FAIL: {type(error).__name__}: {str(error)[:120]}"})
        import onnxruntime as ort

        providers = ort.get_available_providers()
        for provider, precision in [("CUDAExecutionProvider", "fp32"), ("TensorrtExecutionProvider", "fp32"),
                                    ("TensorrtExecutionProvider", "fp16")]:
            label = f"onnxruntime {provider.removesuffix('ExecutionProvider')} EP"
            if provider not in providers or "fp32" not in variants:
                unavailable(label, precision, f"{provider} not in this onnxruntime build (pip install edgeopt[gpu])")
                continue
            from edgeopt.backends.tensorrt.plan import ort_gpu_provider_options

            pairs = ort_gpu_provider_options([provider], None, precision, work / "ort-cache")
            settings = {"provider_options": pairs, "intra_op_threads": 1, "inter_op_threads": 1,
                        "graph_optimization_level": "all", "cache_dir": str(work / "ort-cache")}
            rows.append(run_row("onnxruntime-gpu", label, precision, str(variants["fp32"]), settings, feeds,
                                args.iterations))
        for name in TRT_BOUND:
            if status["tensorrt"] != "available":
                unavailable(f"tensorrt vs goldens ({name})", "int8", status["tensorrt"].removeprefix("unavailable: "))
            elif name not in goldens:
                unavailable(f"tensorrt vs goldens ({name})", "int8", "no goldens (see above)")
            else:
                rows.append(tensorrt_golden_row(name, variants[name], goldens[name], work / "trt-cache"))
        for precision, kind in [("fp32", "fp32"), ("fp16", "fp32"), ("int8", "int8-trt-qdq")]:
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
            recipe_kind = Recipe.parse(kind).kind  # int8-trt-qdq is an int8-static (Q/DQ) recipe
            settings = {"precision": precision, "variant_kind": recipe_kind, "cache_dir": str(work / "trt-cache"),
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
