"""The makers: variants of one ONNX model made with ONNX Runtime's tools (fp32, fp16, int8-dynamic, int8-static),
each from a :class:`~edgeopt.models.recipes.Recipe` into a :class:`~edgeopt.models.variants.Variant`.

``int8-static-*`` is QDQ as ONNX Runtime's CPU kernels run it (S8S8, or U8S8 with ``-asym``): its
biases are INT32 ``DequantizeLinear`` inputs and, pre-processed, its opset list carries ONNX Runtime's
optimiser domains, so TensorRT's parser refuses it.  ``int8-trt-qdq`` is the file that feeds TensorRT:
explicit Q/DQ per TensorRT's rules (symmetric INT8, zero points 0, per-channel weights, per-tensor
activations, biases left in float with ``QuantizeBias=False``, only the opset domains its nodes use,
opset 13..:data:`TENSORRT_MAX_OPSET`); it is not the CPU-fastest file.  Every quantizer call runs in a
scratch working directory that edgeopt owns and removes (ONNX Runtime leaves files behind in
the current directory when shape inference fails), pre-processing is tried, validated and
abandoned cleanly per model, and each variant is validated by opening it in ONNX Runtime
before it is published.  Provenance (recipe, parent hash, calibration hash, tool versions,
excluded nodes) is written beside every variant.  The recipe grammar and the default choice of variants are in
:mod:`edgeopt.models.recipes`, the variant types in :mod:`edgeopt.models.variants`.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeopt.core import progress
from edgeopt.core.fileio import atomic_path, sha256_file, sha256_json, write_json_atomic, write_text_atomic
from edgeopt.core.logs import FILE_ONLY
from edgeopt.errors import EdgeoptError, NotApplicableError, QuantizationError, brief, first_line
from edgeopt.models import modelopt, nncf_quantize
from edgeopt.models.calibration import CalibrationSet, validate_samples
from edgeopt.models.export import random_feeds
from edgeopt.models.export_parity import compare_outputs
from edgeopt.models.graph import cpu_session, external_data_files, input_specs, load_model, model_size_bytes
from edgeopt.models.graph_check import refusal
from edgeopt.models.model_kind import HeadNode, attention_softmaxes, head_nodes
from edgeopt.models.modelopt import QUANTIZER as MODELOPT
from edgeopt.models.nncf_quantize import QUANTIZER as NNCF
from edgeopt.models.ranges import collect_tensor_stats, compute_ranges, huge, unobserved, write_ort_cache
from edgeopt.models.recipes import PRECISION_OF_KIND, Recipe
from edgeopt.models.sorted_copy import sorted_source
from edgeopt.models.subgraphs import all_nodes, sort_nodes, subgraphs, unique_initializer_names
from edgeopt.models.variants import LEFT_FLOAT_IN_SUBGRAPHS, Variant, VariantFailure, provenance_path

#: Per-axis QuantizeLinear/DequantizeLinear (the ``axis`` attribute) needs opset 13.
TENSORRT_MIN_OPSET = 13
#: The highest opset every shipped TensorRT target parses: 20, TensorRT 10.0/10.1's maximum (onnx-tensorrt 10.1-GA
#: docs/operators.md; 24 from 10.15 on).  tests/test_tensorrt_readiness.py keeps it equal to the lowest maximum in
#: edgeopt/backends/tensorrt/operators/*.json.
TENSORRT_MAX_OPSET = 20


def _versions() -> dict[str, str]:
    import onnxruntime as ort

    return {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__}


@contextlib.contextmanager
def scratch_directory(parent: Path) -> Iterator[Path]:
    """A fresh working directory for the quantizer, removed afterwards with whatever it left."""
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=parent))
    previous = Path.cwd()
    os.chdir(scratch)
    try:
        yield scratch
    finally:
        os.chdir(previous)
        shutil.rmtree(scratch, ignore_errors=True)



def _remove_stale_scratch(work_dir: Path) -> None:
    stale = sorted(work_dir.glob(".scratch-*")) if work_dir.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        logging.getLogger(__name__).info(f"removed {len(stale)} scratch folder(s) a stopped run left in {work_dir}")


_NODE_PATTERNS = (r"Node \(([^)]+)\)", r"node[ _]name[:=]\s*'?([\w./:-]+)", r"[Nn]ode '([^']+)'")


def _node_in(message: str) -> str | None:
    for pattern in _NODE_PATTERNS:
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    return None


def _session(path: Path) -> Any:
    return cpu_session(path)


def _probe_feeds(model_path: Path, calibration: CalibrationSet | None) -> dict[str, np.ndarray]:
    if calibration is not None and calibration.count:
        return calibration.samples[0]
    specs = input_specs(onnx.load(str(model_path), load_external_data=False))
    return random_feeds(specs, seed=0)


VALIDATION_TIMEOUT_S = 300.0  # the shipped profiles' worker_timeout_s: no one inference may take longer


def validate_variant(path: Path, name: str, feeds: dict[str, np.ndarray],
                     timeout_s: float = VALIDATION_TIMEOUT_S) -> list[np.ndarray]:
    """Open and run the variant once in ONNX Runtime; any failure names the variant and the node.

    The run is stopped after ``timeout_s`` (ONNX Runtime's ``RunOptions.terminate``, which control-flow
    operators check on every iteration too): a model that never finishes is a failed variant, not a hung
    command."""
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        said = refusal(error, onnx.load(str(path), load_external_data=False))  # the statement, node and tensor
        raise QuantizationError(f"variant {name}: produced an invalid ONNX graph: {said.line()}") from error
    import onnxruntime as ort  # the parent's run of the variant; imported where it is needed

    options = ort.RunOptions()
    options.log_severity_level = 4  # the stop is reported below, once, not as an ONNX Runtime error line
    stop = threading.Timer(timeout_s, lambda: setattr(options, "terminate", True))
    stop.daemon = True
    stop.start()
    try:
        return list(_session(path).run(None, feeds, options))
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
        if options.terminate:
            raise QuantizationError(
                f"variant {name}: timed out: one inference did not finish within {timeout_s:g} s in ONNX Runtime "
                "(stopped; a model that never finishes cannot be measured)") from error
        reason, node = brief(str(error)), _node_in(str(error))
        if reason != str(error).strip():  # the runtime's whole message goes to run.log
            logging.getLogger(__name__).info(f"variant {name}: ONNX Runtime said: {error}", extra=FILE_ONLY)
        where = f" (node {node})" if node and not reason.startswith("node ") else ""
        raise QuantizationError(f"variant {name}: ONNX Runtime cannot run the result{where}: {reason}") from error
    finally:
        stop.cancel()


def lift_constants(model: onnx.ModelProto) -> int:
    """Turn the main graph's ``Constant`` nodes (tensor ``value``) into initializers, in place.

    Exporters such as paddle2onnx store every weight as a ``Constant`` node; ONNX Runtime's
    quantizers only recognise initializers as weights (FIELD_NOTES: dynamic INT8 fails on them, and
    static INT8 would calibrate them as activations).  Returns how many were lifted.
    """
    if model.ir_version < 4:  # initializers had to be graph inputs before IR 4
        return 0
    kept, lifted = [], 0
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            lifted += 1
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return lifted


def _check_parity(source: Path, candidate: Path, feeds: dict[str, np.ndarray]) -> None:
    want = _session(source).run(None, feeds)
    got = validate_variant(candidate, "pre-processing", feeds)
    for index, (a, b) in enumerate(zip(want, got, strict=True)):
        parity = compare_outputs(str(index), a, b)
        if parity.cosine < 0.9999 or parity.max_rel_error > 1e-3:
            raise QuantizationError(f"output {index} changed (cosine {parity.cosine:.6f})")


def _where(error: BaseException) -> str:
    """The error's first line, and where it was raised when it says nothing (a bare AssertionError)."""
    text = first_line(error)
    frames = traceback.extract_tb(error.__traceback__)
    if text == type(error).__name__ and frames:
        text += f" in {Path(frames[-1].filename).name}:{frames[-1].lineno} ({frames[-1].name})"
    return text


def _preprocessing_skipped(error: BaseException) -> str:
    """What a failed ``quant_pre_process`` means for the user, in words (the cause after a colon)."""
    why = _where(error)
    if "symbolic shape inference" in why.lower():  # FIELD_NOTES: the usual failure on real models
        return f"shape inference incomplete ({why}): ONNX Runtime's pre-processing skipped"
    return f"ONNX Runtime's pre-processing failed ({why}) and was skipped"


def preprocess(source: Path, work_dir: Path, feeds: dict[str, np.ndarray] | None = None) -> tuple[Path, str]:
    """ONNX Runtime's recommended pre-processing, kept only if the result checks out.

    Returns the model to quantize and a note saying what happened.  When ``quant_pre_process`` fails
    (FIELD_NOTES: symbolic shape inference fails on most real models), the fallback is the source
    with its ``Constant`` weights lifted to initializers (checked the same way), else the source as
    is: never a half-processed model (see FIELD_NOTES on skip_symbolic_shape).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = work_dir / f"preprocessed-{sha256_file(source)[:16]}.onnx"
    if target.exists():
        note_file = target.with_suffix(".note")
        return target, (note_file.read_text() if note_file.exists() else "pre-processed") + " (cached)"
    feeds = feeds or random_feeds(input_specs(onnx.load(str(source), load_external_data=False)), seed=7)
    with scratch_directory(work_dir) as scratch:
        staged = scratch / "preprocessed.onnx"
        try:
            quant_pre_process(str(source), str(staged), skip_symbolic_shape=False)
            _check_parity(source, staged, feeds)
            note = "pre-processed"
        except Exception as error:  # noqa: BLE001 - any failure means: fall back, and say why
            skipped = _preprocessing_skipped(error)
            model = onnx.load(str(source))
            lifted = lift_constants(model)
            if not lifted:
                return source, f"{skipped}; variants made from the original graph"
            try:
                onnx.save(model, str(staged))
                _check_parity(source, staged, feeds)
            except Exception:  # noqa: BLE001 - the lifted model did not check out either
                return source, f"{skipped}; variants made from the original graph"
            note = (f"{skipped}; variants made from the original graph, its {lifted} Constant weights lifted to "
                    "initializers")
        with atomic_path(target) as tmp:
            shutil.copyfile(staged, tmp)
        write_text_atomic(target.with_suffix(".note"), note)
    return target, note


class RangeCache:
    """Activation statistics shared by every int8-static variant of one (model, calibration set)."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], Any] = {}

    def stats(self, model_path: Path, calibration: CalibrationSet, scratch: Path) -> Any:
        key = (sha256_file(model_path), calibration.content_hash)
        if key not in self._stats:
            self._stats[key] = collect_tensor_stats(model_path, calibration.feeds(), scratch, histograms=True)
        return self._stats[key]


def _variant_key(source_sha: str, recipe: Recipe, calibration: CalibrationSet | None) -> str:
    return sha256_json({
        "source": source_sha,
        "recipe": recipe.to_dict(),
        "calibration": calibration.content_hash if calibration is not None and recipe.kind == "int8-static" else None,
        "versions": _versions(),
        **({MODELOPT: list(modelopt.REQUIREMENTS)} if recipe.quantizer == MODELOPT else {}),
    })


def _build(recipe: Recipe, model: Path, staged: Path, scratch: Path, calibration: CalibrationSet | None,
           ranges: RangeCache, notes: list[dict[str, str]], upgrade_opset: bool = False) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if recipe.kind == "fp32":  # the file the user ships, byte for byte: ONNX Runtime optimises it when it opens it
        shutil.copyfile(model, staged)
    elif recipe.kind == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        graph = onnx.load(str(model))
        if unique_initializer_names(graph):  # ORT's optimiser copies outer initializers into each If branch
            notes.append({"tensor": "", "nodes": "", "reason": "subgraph initializers renamed apart for the float16 "
                                                                "converter (it keys them by name across the model)"})
        converted = convert_float_to_float16(graph, keep_io_types=True)
        sort_nodes(converted.graph)  # the converter appends its input casts after their consumers
        onnx.save(converted, str(staged))
    elif recipe.kind == "int8-dynamic":
        quantize_dynamic(str(model), str(staged), op_types_to_quantize=list(recipe.op_types) or None,
                         per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                         weight_type=QuantType.QInt8, nodes_to_exclude=list(recipe.exclude_nodes) or None)
    else:
        if calibration is None:
            raise QuantizationError(f"variant {recipe.name}: static quantization needs a calibration set")
        graph = onnx.load(str(model), load_external_data=False)
        opset = _default_opset(graph)
        wanted = _target_opset(recipe, opset, upgrade_opset)
        if wanted != opset:  # per-channel DequantizeLinear (its `axis`) needs opset 13; TensorRT parses up to a maximum
            from onnx import version_converter

            converted = scratch / f"opset{wanted}.onnx"
            onnx.save(version_converter.convert_version(onnx.load(str(model)), wanted), str(converted))
            model = converted  # calibrated as converted: the converter can add tensors (a Softmax at opset 12 -> 13)
            graph = onnx.load(str(model), load_external_data=False)
            why = "for Q/DQ" if not recipe.tensorrt_bound else (
                f"for TensorRT (every shipped parser takes opset {TENSORRT_MIN_OPSET}..{TENSORRT_MAX_OPSET})")
            verb = "upgraded" if wanted > opset else "converted"
            notes.append({"tensor": "", "nodes": "", "reason": f"opset {verb} from {opset} to {wanted} {why}"})
        try:
            stats = ranges.stats(model, calibration, scratch)
        except QuantizationError as error:
            raise QuantizationError(f"variant {recipe.name}: {error}") from error
        missing = unobserved(stats)
        if missing:
            entry = missing[0]
            raise QuantizationError(
                f"variant {recipe.name}: activation '{entry.name}' (node '{entry.producer}') was never observed "
                f"during calibration ({len(missing)} such tensors); exclude that node or use other calibration data"
            )
        exclude = list(recipe.exclude_nodes)
        compute = [n.name for n in graph.graph.node if n.op_type in ("Conv", "MatMul", "Gemm") and n.name]
        ends = {"first": compute[0], "last": compute[-1]} if recipe.float_ends and compute else {}
        for which, name in ends.items():  # -fl: the layer that reads the raw input and the one that writes the output
            if name not in exclude:
                exclude.append(name)
                notes.append({"tensor": "", "nodes": name,
                              "reason": f"the {which} Conv/MatMul/Gemm (-fl); left in float"})
        for head in head_nodes(graph):  # one int8 scale for boxes and scores rounds the scores away
            if head.name not in exclude and any(n.name == head.name for n in graph.graph.node):
                exclude.append(head.name)
                notes.append({"tensor": "", "nodes": head.name, "reason": f"output head {head.op_type} "
                                                                          f"{head.reason}; left in float"})
        for entry in huge(stats):
            nodes = [n for n in _consumers(graph, entry.name) if n not in exclude]
            exclude += nodes
            notes.append({"tensor": entry.name, "nodes": ", ".join(nodes),
                          "reason": f"range ±{entry.absmax:.3g} is a sentinel, not a range; left in float"})
        method = recipe.calibration_method or "minmax"
        cache = scratch / "ranges.json"
        write_ort_cache(compute_ranges(stats, method), method, cache)
        enum = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}[method]
        quantize_static(
            str(model), str(staged), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(recipe.op_types)
            or None, per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range, weight_type=QuantType.QInt8,
            # symmetric: int8 activations (S8S8, what TensorRT takes); asymmetric: uint8 (U8S8, ORT's CPU format)
            activation_type=QuantType.QInt8 if recipe.activation_symmetric else QuantType.QUInt8,
            nodes_to_exclude=exclude or None, calibrate_method=enum, calibration_cache_path=str(cache),
            extra_options=_extra_options(recipe),
        )
        if recipe.tensorrt_bound:
            _finish_for_tensorrt(staged, recipe.name, notes)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx")), 13)


def _target_opset(recipe: Recipe, opset: int, upgrade_opset: bool) -> int:
    """The opset the float model is converted to before quantizing (``opset`` itself when it stays)."""
    if recipe.tensorrt_bound:
        return min(max(opset, TENSORRT_MIN_OPSET), TENSORRT_MAX_OPSET)
    return 13 if opset < 13 and upgrade_opset else opset


def _extra_options(recipe: Recipe) -> dict[str, Any]:
    """``quantize_static``'s extra_options (names as onnxruntime.quantization.quantize.StaticQuantConfig documents)."""
    options: dict[str, Any] = {"ActivationSymmetric": recipe.activation_symmetric,
                               "WeightSymmetric": recipe.weight_symmetric}
    if recipe.tensorrt_bound:
        # biases stay float: TensorRT's parser refuses an INT32 DequantizeLinear ("only activation types allowed as
        # input to this layer", onnx/onnx-tensorrt#850; microsoft/onnxruntime#17738)
        options["QuantizeBias"] = False
    return options


def strip_unused_domains(model: onnx.ModelProto) -> list[str]:
    """Remove, in place, the opset_import entries of domains no node (nor model-local function) uses; the default
    domain always stays.  Returns the removed domains (ONNX Runtime's optimiser lists a dozen it never uses)."""
    used = {node.domain for node in all_nodes(model.graph)} | {function.domain for function in model.functions}
    for function in model.functions:
        used |= {node.domain for node in function.node}
    kept = [e for e in model.opset_import if e.domain in ("", "ai.onnx") or e.domain in used]
    removed = [e.domain for e in model.opset_import if e not in kept]
    if removed:
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return removed


def _make_modelopt_variant(source: Path, recipe: Recipe, target: Path, *, key: str, source_sha: str,
                           calibration: CalibrationSet | None, feeds: dict[str, np.ndarray], chosen_by: str | None,
                           timeout_s: float) -> Variant:
    """``target`` (``int8-trt-modelopt.onnx``) made by ModelOpt (:mod:`edgeopt.models.modelopt`), finished for
    TensorRT like ``int8-trt-qdq`` and checked under ONNX Runtime; its provenance records what ModelOpt ran."""
    started = time.perf_counter()
    notes: list[dict[str, str]] = []
    with scratch_directory(target.parent / ".work") as scratch:
        run = modelopt.quantize_with_modelopt(source, recipe.name, recipe.exclude_nodes, calibration, scratch,
                                              target.with_name(f"{recipe.name}.modelopt.log"))
        _finish_for_tensorrt(run.path, recipe.name, notes)
        validate_variant(run.path, recipe.name, feeds, timeout_s)
        with atomic_path(target) as tmp:
            shutil.copyfile(run.path, tmp)
    assert calibration is not None  # quantize_with_modelopt refuses to run without one
    provenance: dict[str, Any] = {
        "kind": "variant", "name": recipe.name, "precision": recipe.precision, "recipe": recipe.to_dict(),
        "chosen_by": chosen_by, "purpose": recipe.purpose, "target": recipe.target, "key": key,
        "parent": {"path": str(source), "sha256": source_sha},
        "preprocessing": "not applicable: ModelOpt pre-processes the float model itself",
        "calibration": calibration.describe(), "excluded": notes, "modelopt": run.provenance,
        "versions": {**_versions(), "nvidia-modelopt": run.provenance["version"]},
        "seconds": round(time.perf_counter() - started, 3), "sha256": sha256_file(target),
        "size_bytes": model_size_bytes(target),
    }
    write_json_atomic(provenance_path(target), provenance)
    return Variant(name=recipe.name, path=target, precision=recipe.precision, provenance=provenance)


def _make_nncf_variant(source: Path, source_graph: onnx.ModelProto, recipe: Recipe, target: Path, *, key: str,
                       source_sha: str, calibration: CalibrationSet, chosen_by: str | None,
                       max_drop: float | None) -> Variant:
    """``target`` (``int8-nncf*.xml``, weights beside as ``.bin``) made by NNCF from the float ONNX ``source``;
    its provenance records what NNCF ran (version, preset, model type, ignored scope, subset, accuracy control)
    and the weights file's hash beside the IR's."""
    started = time.perf_counter()
    ignored = head_nodes(source_graph) + [HeadNode(name, "", "named by the recipe") for name in recipe.exclude_nodes]
    with scratch_directory(target.parent / ".work") as scratch:
        staged = scratch / target.name
        record = nncf_quantize.quantize_with_nncf(
            source, source_graph, staged, calibration=calibration,
            preset="performance" if recipe.activation_symmetric else "mixed", accuracy_control=recipe.accuracy_control,
            max_drop=nncf_quantize.DEFAULT_MAX_DROP if max_drop is None else max_drop, ignored=ignored)
        weights = target.with_suffix(".bin")
        with atomic_path(weights) as tmp:  # the weights first: the IR is published last, naming them
            shutil.copyfile(staged.with_suffix(".bin"), tmp)
        with atomic_path(target) as tmp:
            shutil.copyfile(staged, tmp)
    provenance: dict[str, Any] = {
        "kind": "variant", "name": recipe.name, "precision": recipe.precision, "recipe": recipe.to_dict(),
        "chosen_by": chosen_by, "purpose": recipe.purpose, "target": recipe.target, "key": key,
        "format": "openvino-ir", "weights": {"path": weights.name, "sha256": sha256_file(weights)},
        "parent": {"path": str(source), "sha256": source_sha},
        "preprocessing": "none: NNCF quantizes OpenVINO's reading of the float model",
        "calibration": calibration.describe(), "excluded": [n.to_dict() for n in ignored], "nncf": record,
        "versions": {**_versions(), "nncf": record["version"]},
        "seconds": round(time.perf_counter() - started, 3), "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size + weights.stat().st_size,
    }
    write_json_atomic(provenance_path(target), provenance)
    return Variant(name=recipe.name, path=target, precision=recipe.precision, provenance=provenance)


def _finish_for_tensorrt(staged: Path, name: str, notes: list[dict[str, str]]) -> None:
    """Only the opset domains the graph uses; no operator outside the ONNX domain (TensorRT's parser dispatches on
    the op type and has no importer for ONNX Runtime's fused ops); opset within every shipped parser's range."""
    model = onnx.load(str(staged))
    foreign = sorted({f"{n.domain}.{n.op_type}" for n in all_nodes(model.graph) if n.domain not in ("", "ai.onnx")})
    if foreign:
        raise QuantizationError(f"variant {name}: the graph holds operators outside the ONNX domain "
                                f"({', '.join(foreign)}), which TensorRT cannot parse: quantize the original export")
    opset = _default_opset(model)
    if not TENSORRT_MIN_OPSET <= opset <= TENSORRT_MAX_OPSET:
        raise QuantizationError(f"variant {name}: the quantizer wrote opset {opset}; TensorRT needs "
                                f"{TENSORRT_MIN_OPSET}..{TENSORRT_MAX_OPSET}")
    removed = strip_unused_domains(model)
    if removed:
        onnx.save(model, str(staged))
        notes.append({"tensor": "", "nodes": "", "reason": f"opset_import domains no node uses removed for TensorRT: "
                      f"{', '.join(sorted(removed))}"})


def _build_and_check(recipe: Recipe, model: Path, staged: Path, scratch: Path, calibration: CalibrationSet | None,
                     ranges: RangeCache, notes: list[dict[str, str]], feeds: dict[str, np.ndarray],
                     upgrade_opset: bool = False, timeout_s: float = VALIDATION_TIMEOUT_S) -> None:
    """Build one variant from ``model`` into ``staged`` and open and run it once (stopped after ``timeout_s``);
    errors name the variant."""
    try:
        _build(recipe, model, staged, scratch, calibration, ranges, notes, upgrade_opset)
    except EdgeoptError:
        raise
    except Exception as error:  # noqa: BLE001 - the quantizer raises anything; report it cleanly
        logging.getLogger(__name__).warning("variant %s: quantizer failed on %s", recipe.name, model, exc_info=error)
        node = _node_in(str(error))
        fused = _runtime_fused_ops(onnx.load(str(model), load_external_data=False))
        cause = (f"the graph already holds ONNX Runtime-specific fused operators ({fused}), saved after ONNX "
                 "Runtime's own optimisation: quantize the original export" if fused else first_line(error))
        raise QuantizationError(f"variant {recipe.name}: quantizer failed{f' at node {node}' if node else ''}: "
                                f"{cause}") from error
    if PRECISION_OF_KIND[recipe.kind] == "int8":
        _check_quantized(staged, recipe.name, notes, refuse_empty=not recipe.exclude_nodes)
    validate_variant(staged, recipe.name, feeds, timeout_s)


def _check_quantized(staged: Path, name: str, notes: list[dict[str, str]], refuse_empty: bool) -> None:
    """Refuse (with ``refuse_empty``: the recipe excludes no node itself, as ``tune``'s last candidates do) an INT8
    file in which the quantizer quantized nothing (it would be fp32 under an INT8 name), and note the compute that
    ONNX Runtime's quantizer left float inside If/Loop/Scan subgraphs (it does not enter them: its
    ``EnableSubgraph`` option is dynamic-only and fails on branches that read outer weights)."""
    built = onnx.load(str(staged), load_external_data=False)
    quantized = sum(node.op_type in _QUANTIZED_OPS for node in all_nodes(built.graph))
    inner = Counter(node.op_type for top in built.graph.node for graph in subgraphs(top) for node in all_nodes(graph)
                    if node.op_type in _COMPUTE_OPS)
    left = ", ".join(f"{op} x{n}" for op, n in sorted(inner.items()))
    if not quantized and refuse_empty:
        why = (f"its compute ({left}) is inside If/Loop/Scan subgraphs, which ONNX Runtime's quantizer leaves float"
               if left else "the graph has no operator ONNX Runtime's quantizer quantizes")
        raise NotApplicableError(f"variant {name}: nothing to quantize: {why}; the file would be the float model "
                                 "under an INT8 name")
    if left:
        notes.append({"tensor": "", "nodes": left, "reason": LEFT_FLOAT_IN_SUBGRAPHS})


_COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Attention"}
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
                  "QLinearConv", "QLinearMatMul", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "QGemm",
                  "MatMulIntegerToFloat"}


def _op_counts(graph: onnx.ModelProto, wanted: Callable[[onnx.NodeProto], bool]) -> str:
    counts: dict[str, int] = {}
    for node in graph.graph.node:
        if wanted(node):
            label = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))


def _already_quantized(graph: onnx.ModelProto) -> str:
    """The quantized operators a graph already holds ('' when none): it cannot be quantized again."""
    return _op_counts(graph, lambda node: node.op_type in _QUANTIZED_OPS)


def _runtime_fused_ops(graph: onnx.ModelProto) -> str:
    """ONNX Runtime's own (com.microsoft) operators in a graph ('' when none)."""
    return _op_counts(graph, lambda node: node.domain.startswith("com.microsoft"))


def _consumers(graph: onnx.ModelProto, tensor: str) -> list[str]:
    return [node.name for node in graph.graph.node if node.name and (tensor in node.input or tensor in node.output)]


def source_digest(source: Path) -> str:
    """sha256 of the model file, or, for a model with external data, of the file and every data file it names
    (a variant must be remade when its weights change, even when the ``.onnx`` file does not)."""
    locations = external_data_files(source)
    if not locations:
        return sha256_file(source)
    base = source.resolve().parent
    parts = [sha256_file(source), *(f"{loc}={sha256_file(base / loc)}" for loc in locations)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


PROTOBUF_LIMIT = 2**31 - 1  # bytes: a model whose weights do not fit must keep its external data


def self_contained(source: Path, digest: str, work_dir: Path) -> Path:
    """``source`` itself, or for a model with external data a copy with its weights inside the file (cached by
    ``digest`` under ``work_dir``): ONNX Runtime's optimiser and quantizers write their output elsewhere and
    would leave its external references dangling, and a variant that is one file travels whole (a lab node)."""
    if not external_data_files(source):
        return source
    inline = work_dir / "inline" / f"{source.stem}-{digest[:16]}.onnx"
    if inline.is_file():
        return inline
    graph = load_model(source)  # checked (inside its folder, no symlink), then read in
    size = graph.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise QuantizationError(f"{source}: its weights ({size / 2**30:.1f} GiB) do not fit one ONNX file; variants "
                                "of models over 2 GiB are not supported yet")
    inline.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(inline) as tmp:
        onnx.save(graph, str(tmp))
    return inline


def _reusable(target: Path, key: str) -> Variant | None:
    """The variant already at ``target`` when its provenance records ``key`` and its file still has the recorded
    hash; None otherwise (absent, unreadable, made another way, or changed since)."""
    if target.exists() and provenance_path(target).exists():
        with contextlib.suppress(Exception):
            existing = Variant.load(target)
            weights = existing.provenance.get("weights")  # an OpenVINO IR's .bin, checked as the IR is
            if existing.provenance.get("key") == key and sha256_file(target) == existing.sha256 and (
                    weights is None or sha256_file(target.parent / weights["path"]) == weights["sha256"]):
                return existing
    return None


def _checked_calibration(source: Path, source_graph: onnx.ModelProto, recipe: Recipe,
                         calibration: CalibrationSet | None) -> CalibrationSet | None:
    """Refuse a source that is already quantized (any kind but fp32); for int8-static, the calibration samples the
    recipe asks for (``-n<count>``), checked against the model's inputs."""
    if recipe.kind != "fp32":
        already = _already_quantized(source_graph)
        if already:
            raise NotApplicableError(f"variant {recipe.name}: {source.name} is already quantized ({already}); make "
                                     "variants from the original float export")
    if recipe.kind == "int8-static" and calibration is not None and recipe.calibration_samples is not None:
        if recipe.calibration_samples > calibration.count:
            raise QuantizationError(f"variant {recipe.name}: asks for {recipe.calibration_samples} calibration "
                                    f"samples, {calibration.source} holds {calibration.count}")
        calibration = calibration.take(recipe.calibration_samples)
    if recipe.kind == "int8-static" and calibration is not None:
        validate_samples(list(calibration.samples), input_specs(onnx.load(str(source), load_external_data=False)),
                         min_samples=1, source_label=calibration.source)
    return calibration


def _build_first_that_works(recipe: Recipe, model: Path, source: Path, staged: Path, scratch: Path,
                            calibration: CalibrationSet | None, ranges: RangeCache, notes: list[dict[str, str]],
                            feeds: dict[str, np.ndarray], timeout_s: float) -> QuantizationError | None:
    """Build ``recipe`` into ``staged`` from the first candidate that builds and checks out: the pre-processed graph
    ``model`` first, then ``source`` as given; for per-channel Q/DQ on opset < 13, each also with its opset converted
    to 13 (the converter can itself break a graph).  Raises the first candidate's error when none works; returns it
    when ``source`` was used instead of ``model`` (None when ``model`` was)."""
    graph = onnx.load(str(source), load_external_data=False)
    old_opset = next((e.version for e in graph.opset_import if e.domain in ("", "ai.onnx")), 13) < 13
    upgrades = [False, True] if recipe.kind == "int8-static" and old_opset and not recipe.tensorrt_bound \
        else [False]
    attempts = list(dict.fromkeys((m, u) for m in (model, source) for u in upgrades))
    first_error: QuantizationError | None = None
    for candidate, upgrade in attempts:
        notes.clear()
        try:
            _build_and_check(recipe, candidate, staged, scratch, calibration, ranges, notes, feeds, upgrade, timeout_s)
        except QuantizationError as error:
            first_error = first_error or error
            continue
        return first_error if candidate != model else None
    assert first_error is not None
    raise first_error


def make_variant(
    source: Path | str,
    recipe: Recipe,
    out_dir: Path | str,
    *,
    calibration: CalibrationSet | None = None,
    ranges: RangeCache | None = None,
    force: bool = False,
    probe_feeds: dict[str, np.ndarray] | None = None,
    chosen_by: str | None = None,
    validation_timeout_s: float = VALIDATION_TIMEOUT_S,
    max_cosine_drop: float | None = None,
) -> Variant:
    """Make (or reuse, when its provenance matches) one variant of ``source`` in ``out_dir``.

    ``probe_feeds`` (concrete inputs; default: the first calibration sample, else seeded random data
    for the declared shapes) are what pre-processing and the finished variant are checked on.
    ``max_cosine_drop``: what ``int8-nncf-ac``'s accuracy control may lose of the outputs' cosine to fp32
    (``1 - min_cosine`` of the run's profiles; default :data:`edgeopt.models.nncf_quantize.DEFAULT_MAX_DROP`).
    """
    source, out_dir = Path(source).resolve(), Path(out_dir).resolve()  # the quantizer runs in a scratch cwd
    source_graph = load_model(source, load_external_data=False)
    target = out_dir / f"{recipe.name}{recipe.file_suffix}"
    source_sha = source_digest(source)
    key = _variant_key(source_sha, recipe, calibration)
    existing = None if force else _reusable(target, key)
    if existing is not None:
        return existing
    calibration = _checked_calibration(source, source_graph, recipe, calibration)
    asked, model_kind = recipe, None
    if recipe == Recipe.parse("int8-dynamic") and attention_softmaxes(source_graph.graph):
        # ONNX Runtime's default int8-dynamic quantizes every op it can, per tensor: on a transformer that costs
        # fidelity where int8 pays nothing (MiniLM: cosine 0.972); MatMul-only, per-channel weights keeps it
        heads = attention_softmaxes(source_graph.graph)
        recipe = replace(recipe, op_types=("MatMul",), per_channel=True)
        model_kind = (f"transformer ({len(heads)} attention Softmax node(s), e.g. {heads[0]}): int8-dynamic made as "
                      "int8-dynamic-pc-matmul (MatMul only, per-channel weights)")
    if recipe.quantizer == NNCF:  # Intel's quantizer: an OpenVINO IR
        if calibration is None:
            raise QuantizationError(f"variant {recipe.name}: NNCF needs a calibration set")
        return _make_nncf_variant(source, source_graph, recipe, target, key=key, source_sha=source_sha,
                                  calibration=calibration, chosen_by=chosen_by, max_drop=max_cosine_drop)
    if recipe.quantizer == MODELOPT:  # NVIDIA's quantizer, in its own venv
        feeds = probe_feeds or _probe_feeds(source, calibration)
        return _make_modelopt_variant(source, recipe, target, key=key, source_sha=source_sha, feeds=feeds,
                                      calibration=calibration, chosen_by=chosen_by, timeout_s=validation_timeout_s)
    work_dir = out_dir / ".work"
    started = time.perf_counter()
    given = source
    ordered = sorted_source(source, work_dir / "sorted")  # the user's file, or a copy with its nodes sorted
    source = self_contained(ordered.path, source_sha, work_dir)
    model, note = (source, "not applicable") if recipe.kind == "fp32" else preprocess(
        source, work_dir, probe_feeds or _probe_feeds(source, calibration))
    notes: list[dict[str, str]] = []
    feeds = probe_feeds or _probe_feeds(source, calibration)
    with scratch_directory(work_dir) as scratch:
        staged = scratch / "variant.onnx"
        unused = _build_first_that_works(recipe, model, source, staged, scratch, calibration, ranges or RangeCache(),
                                         notes, feeds, validation_timeout_s)
        if unused is not None:
            note += f"; not used for this variant ({unused})"
        with atomic_path(target) as tmp:
            shutil.copyfile(staged, tmp)
    provenance: dict[str, Any] = {
        "kind": "variant",
        "name": asked.name,
        "precision": recipe.precision,
        "recipe": recipe.to_dict(),
        "model_kind": model_kind,  # a default the model's kind changed (None: the recipe as named)
        "chosen_by": chosen_by,  # the rule that put this recipe in the run (None: the user named it)
        "purpose": recipe.purpose,  # int8-static: which runtime its Q/DQ is built for (None: other kinds)
        "target": recipe.target if recipe.kind == "int8-static" else None,
        "key": key,
        "parent": {"path": str(given), "sha256": source_sha},
        "graph_repairs": list(ordered.repairs),  # e.g. nodes sorted topologically (the user's file is unchanged)
        "preprocessing": note,
        "calibration": calibration.describe() if calibration is not None and recipe.kind == "int8-static" else None,
        "excluded": notes,
        "versions": _versions(),
        "seconds": round(time.perf_counter() - started, 3),
        "sha256": sha256_file(target),
        "size_bytes": model_size_bytes(target),
    }
    write_json_atomic(provenance_path(target), provenance)
    return Variant(name=asked.name, path=target, precision=recipe.precision, provenance=provenance)


def make_variants(
    source: Path | str,
    recipes: Sequence[Recipe],
    out_dir: Path | str,
    *,
    calibration: CalibrationSet | None = None,
    force: bool = False,
    probe_feeds: dict[str, np.ndarray] | None = None,
    chosen_by: Mapping[str, str] | None = None,
    validation_timeout_s: float = VALIDATION_TIMEOUT_S,
    max_cosine_drop: float | None = None,
) -> list[Variant | VariantFailure]:
    """Make every recipe; a failing one becomes a ``VariantFailure`` and the others still run.
    ``chosen_by``: recipe name -> the rule that chose it, recorded in its provenance.  The quantizer's scratch
    folders a stopped or killed earlier command left in ``out_dir/.work`` are removed first (one command makes a
    folder's variants at a time: the run-folder lock)."""
    _remove_stale_scratch(Path(out_dir) / ".work")
    ranges = RangeCache()
    results: list[Variant | VariantFailure] = []
    for recipe in recipes:
        try:
            with progress.task(f"variant {recipe.name}"):
                results.append(make_variant(source, recipe, out_dir, calibration=calibration, ranges=ranges,
                                            force=force, probe_feeds=probe_feeds,
                                            chosen_by=(chosen_by or {}).get(recipe.name),
                                            validation_timeout_s=validation_timeout_s,
                                            max_cosine_drop=max_cosine_drop))
        except EdgeoptError as error:
            results.append(VariantFailure(recipe.name, str(error), error.exit_code,
                                          not_applicable=isinstance(error, NotApplicableError)))
    return results
