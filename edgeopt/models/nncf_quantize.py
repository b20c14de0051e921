"""NNCF, Intel's quantizer for OpenVINO, as the ``int8-nncf`` and ``int8-nncf-ac`` recipes (extra ``openvino``).

The float ONNX model is read by OpenVINO (``Core.read_model``; not ``openvino.convert_model``, which sends
telemetry), quantized by ``nncf.quantize`` on the run's own calibration samples (the ``CalibrationSet`` the ONNX
Runtime recipes use: one calibration, several quantizers), and saved as OpenVINO IR (``<name>.xml`` and its
weights ``<name>.bin``), which only the OpenVINO rows run.  Measured on the conformance corpus, NNCF's OpenVINO
backend keeps more fidelity than its ONNX backend's Q/DQ file run by OpenVINO (ppocrv4-rec cosine 0.956 vs
0.532, oww-speech-embedding 0.995 vs 0.981) at the same speed, hence IR.

- **Preset and model type**: ``PERFORMANCE`` (symmetric) unless the recipe asks ``-mixed``; a graph with
  attention (:mod:`edgeopt.models.model_kind`) gets ``ModelType.TRANSFORMER`` (SmoothQuant, MIXED preset, its
  own patterns: MiniLM-L3 cosine 0.998 with it, 0.37 without), which NNCF never detects by itself.
- **Ignored scope**: the output heads that int8 destroys, found in the graph
  (:func:`edgeopt.models.model_kind.head_nodes`: a ``Concat`` that joins values of different kinds into an
  output, such as a detector's boxes and scores), plus the recipe's own names; recorded in provenance with the
  reason for each.
- **Accuracy control** (``int8-nncf-ac``): ``nncf.quantize_with_accuracy_control`` reverts the quantizers that
  cost the most until the drop of the validation metric is within ``max_drop``; the metric is the mean output
  cosine to the fp32 model on held-out samples (per-sample values, so NNCF ranks by them), and ``max_drop`` is
  ``1 - min_cosine`` of the profile (0.01 when it sets none).  A model where every quantizer had to go is no
  int8 model: refused, naming the budget.
- NNCF's telemetry is off (``NNCF_CI``), its logs at ERROR and its progress bars (printed to stdout whatever
  the log level) captured into the run's log; ``import nncf`` imports torch when torch is installed, so it is
  imported only when such a recipe runs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeopt.errors import BackendUnavailableError, QuantizationError
from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.model_kind import HeadNode, attention_softmaxes

logger = logging.getLogger(__name__)

QUANTIZER = "nncf"
RECIPE = "int8-nncf"
ACCURACY_RECIPE = "int8-nncf-ac"
PURPOSE = ("OpenVINO-bound: NNCF's INT8 OpenVINO IR (FakeQuantize as OpenVINO's CPU plugin runs it); OpenVINO rows "
           "only")
#: The outputs' mean cosine drop accuracy control allows when the profile sets no ``min_cosine``.
DEFAULT_MAX_DROP = 0.01
#: Samples NNCF's accuracy control validates on, taken from the end of the calibration set (held out when the
#: set has more than twice as many).
VALIDATION_SAMPLES = 16


def available() -> str | None:
    """None when NNCF and OpenVINO can be imported, else what to install."""
    missing = [name for name in ("nncf", "openvino") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(missing)} not installed: pip install 'edgeopt[openvino]'" if missing else None


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[io.StringIO]:
    """NNCF without telemetry, its INFO logs and its progress bars (captured; yielded for the run's log)."""
    os.environ.setdefault("NNCF_CI", "1")  # NNCF's own switch for its telemetry (nncf.definitions)
    import nncf

    nncf.set_log_level(logging.ERROR)
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        yield said


def _ov_names(ov_model: Any, wanted: Sequence[HeadNode]) -> list[str]:
    """OpenVINO's names for ``wanted`` ONNX nodes: the friendly name of the op OpenVINO made of each (its node
    name, or its output tensor's name)."""
    names = {op.get_friendly_name() for op in ov_model.get_ops()}
    return [n.name for n in wanted if n.name in names]


def _cosines(reference: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    values = []
    for a, b in zip(reference, got, strict=True):
        x, y = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
        norms = float(np.linalg.norm(x) * np.linalg.norm(y))
        values.append(float(x @ y / norms) if norms > 0 else 1.0)
    return min(values) if values else 1.0


def quantize_with_nncf(source: Path, graph: onnx.ModelProto, target: Path, *, calibration: CalibrationSet,
                       preset: str = "performance", accuracy_control: bool = False,
                       max_drop: float = DEFAULT_MAX_DROP, ignored: Sequence[HeadNode] = ()) -> dict[str, Any]:
    """Quantize the ONNX model ``source`` (``graph``: its skeleton, already loaded) into the OpenVINO IR
    ``target`` (``.xml``, weights beside as ``.bin``); what NNCF did, for provenance.  Raises QuantizationError
    naming the recipe when NNCF fails."""
    missing = available()
    if missing:
        raise BackendUnavailableError(f"{RECIPE}: {missing}")
    import openvino as ov

    core = ov.Core()
    float_model = core.read_model(str(source))
    heads = attention_softmaxes(graph.graph)
    samples = [dict(s) for s in calibration.samples]
    names = _ov_names(float_model, ignored)
    record: dict[str, Any] = {
        "version": importlib.metadata.version("nncf"), "backend": "openvino", "preset": preset,
        "model_type": "transformer" if heads else "default",
        "model_type_reason": (f"{len(heads)} attention Softmax node(s), e.g. {heads[0]}" if heads
                              else "no attention in the graph"),
        "subset_size": len(samples), "ignored_scope": [n.to_dict() for n in ignored if n.name in names],
        "accuracy_control": None}
    with _quiet_nncf() as said:
        import nncf

        options: dict[str, Any] = {
            "preset": nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
            "target_device": nncf.TargetDevice.CPU, "subset_size": len(samples),
            "model_type": nncf.ModelType.TRANSFORMER if heads else None,
            "ignored_scope": nncf.IgnoredScope(names=names, validate=False) if names else None}
        try:
            if accuracy_control:
                quantized = _with_accuracy_control(core, float_model, samples, options, max_drop, record)
            else:
                quantized = nncf.quantize(float_model, nncf.Dataset(samples), **options)
        except (RuntimeError, ValueError, TypeError, nncf.ValidationError, nncf.InternalError) as error:
            raise QuantizationError(f"{RECIPE}: NNCF failed: {type(error).__name__}: "
                                    f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}") from error
    logger.debug(f"{RECIPE}: what NNCF printed:\n{said.getvalue().rstrip()}")
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if not fake_quantize:
        raise QuantizationError(f"{ACCURACY_RECIPE if accuracy_control else RECIPE}: NNCF left no quantizer in the "
                                f"model (accuracy control: no int8 model keeps the outputs' cosine drop within "
                                f"{max_drop:g})")
    record["fake_quantize"] = fake_quantize
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return record


def _with_accuracy_control(core: Any, float_model: Any, samples: list[dict[str, np.ndarray]],
                           options: dict[str, Any], max_drop: float, record: dict[str, Any]) -> Any:
    """``nncf.quantize_with_accuracy_control`` with the mean output cosine to fp32 as the metric (per sample)."""
    import nncf

    held = VALIDATION_SAMPLES if len(samples) > 2 * VALIDATION_SAMPLES else 0
    calibrate, validate = (samples[:-held], samples[-held:]) if held else (samples, samples[:VALIDATION_SAMPLES])
    compiled = core.compile_model(float_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    references = [[np.asarray(v) for v in compiled(s).values()] for s in validate]

    def cosine_to_fp32(model: Any, items: Any) -> tuple[float, list[float]]:
        # NNCF passes the raw items of any subset it ranks on: each carries its index, for its fp32 outputs
        per = [_cosines(references[index], [np.asarray(v) for v in model(feed).values()]) for index, feed in items]
        return float(np.mean(per)), per

    options = {**options, "subset_size": len(calibrate)}
    quantized = nncf.quantize_with_accuracy_control(
        float_model, nncf.Dataset(calibrate), nncf.Dataset(list(enumerate(validate)), lambda item: item[1]),
        cosine_to_fp32, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, **options)
    record["accuracy_control"] = {
        "metric": "worst output's cosine to fp32, mean over samples", "max_drop": max_drop,
        "validation_samples": len(validate),
        "held_out": bool(held), "calibration_samples": len(calibrate)}
    record["subset_size"] = len(calibrate)
    return quantized
