"""Bounded-memory activation range collection for static INT8 calibration.

ONNX Runtime's own calibrators keep every intermediate tensor of every sample in memory
(18 GB on a detector), and its "entropy" method uses 128 histogram bins, which leaves the
KL search a single candidate and so reproduces MinMax.  Here ranges are collected in two
streaming passes over the calibration set (min/max, then a 2048-bin histogram of |x|),
holding one sample's tensors at a time, and the three methods are computed from them:

- ``minmax``: the observed minimum and maximum;
- ``percentile``: symmetric ±t where t is the given percentile of |x| (default 99.999);
- ``entropy``: symmetric ±t minimising the KL divergence between the |x| histogram and its
  128-level quantisation (TensorRT's method), over thresholds from 128 to 2048 bins.

The result is written in ONNX Runtime's calibration-cache format so that ``quantize_static``
uses these ranges instead of calibrating again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeopt.core import progress
from edgeopt.errors import QuantizationError
from edgeopt.models.graph import cpu_session

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
HISTOGRAM_BINS = 2048
QUANTIZED_BINS = 128
HUGE_RANGE = 1e30  # |x| beyond this is a sentinel (e.g. an additive -FLT_MAX mask), not a range


@dataclass
class TensorStats:
    """Streaming statistics of one activation tensor over the calibration set."""

    name: str
    producer: str
    minimum: float = math.inf
    maximum: float = -math.inf
    elements: int = 0
    nonfinite: int = 0
    histogram: np.ndarray | None = field(default=None, repr=False)

    @property
    def absmax(self) -> float:
        return max(abs(self.minimum), abs(self.maximum))


def _float_tensors(model: onnx.ModelProto) -> dict[str, str]:
    """Float activation tensors feeding or leaving any node → the node (or 'graph input') making them."""
    inferred = onnx.shape_inference.infer_shapes(model)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    typed = {
        v.name
        for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type in float_types
    }
    initializers = {init.name for init in inferred.graph.initializer}
    producers = {out: (node.name or node.op_type) for node in inferred.graph.node for out in node.output}
    tensors: dict[str, str] = {}
    for node in inferred.graph.node:
        for name in [*node.input, *node.output]:
            if name and name in typed and name not in initializers:
                tensors[name] = producers.get(name, "graph input")
    return tensors


def consumers_of(model: onnx.ModelProto, tensor: str) -> list[str]:
    return [node.name for node in model.graph.node if tensor in node.input or tensor in node.output]


def collect_tensor_stats(
    model_path: Path,
    samples: Iterable[dict[str, np.ndarray]] | list[dict[str, np.ndarray]],
    scratch_dir: Path,
    *,
    histograms: bool,
    bins: int = HISTOGRAM_BINS,
) -> dict[str, TensorStats]:
    """Run the model with every float activation exposed as an output; fold each sample into stats."""

    model = onnx.load(str(model_path))
    tensors = _float_tensors(model)
    existing = {out.name for out in model.graph.output}
    for name in tensors:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    augmented = scratch_dir / "augmented.onnx"
    onnx.save(model, str(augmented))
    session = cpu_session(augmented, threads=None, optimization="disable", log_severity=2)
    names = list(tensors)
    stats = {name: TensorStats(name=name, producer=producer) for name, producer in tensors.items()}
    sample_list = list(samples)
    passes = 2 if histograms else 1
    with progress.task(f"calibration pass 1/{passes}: ranges", total=len(sample_list), unit="samples") as step:
        for index, feeds in enumerate(sample_list):
            _fold_ranges(stats, names, session.run(names, feeds), index)
            step.advance()
    if histograms:
        with progress.task("calibration pass 2/2: histograms", total=len(sample_list), unit="samples") as step:
            for feeds in sample_list:
                for name, value in zip(names, session.run(names, feeds), strict=True):
                    entry = stats[name]
                    data = np.abs(np.asarray(value, dtype=np.float32)).ravel()
                    if data.size == 0 or not 0 < entry.absmax < HUGE_RANGE:
                        continue
                    counts, _ = np.histogram(np.minimum(data, entry.absmax), bins=bins, range=(0.0, entry.absmax))
                    entry.histogram = counts if entry.histogram is None else entry.histogram + counts
                step.advance()
    return stats


def _fold_ranges(stats: dict[str, TensorStats], names: list[str], values: list[Any], index: int) -> None:
    """Fold one calibration sample's activations into each tensor's min, max and element count."""
    for name, value in zip(names, values, strict=True):
        data = np.asarray(value, dtype=np.float32)
        if data.size == 0:
            continue
        entry = stats[name]
        finite = np.isfinite(data)
        if not finite.all():
            if np.isnan(data).any():
                raise QuantizationError(
                    f"activation '{name}' (made by node '{entry.producer}') is NaN on calibration "
                    f"sample {index}; fix the model or the data, or exclude that node"
                )
            entry.nonfinite += int((~finite).sum())
            data = np.where(finite, data, np.sign(data) * np.float32(np.finfo(np.float32).max))
        entry.minimum = min(entry.minimum, float(data.min()))
        entry.maximum = max(entry.maximum, float(data.max()))
        entry.elements += int(data.size)


def _kl_threshold_bins(hist: np.ndarray, quantized_bins: int = QUANTIZED_BINS, step: int = 8) -> int:
    """Number of histogram bins whose upper edge is the KL-optimal clipping threshold."""
    hist = hist.astype(np.float64)
    total_bins = hist.size
    best_bins, best_kl = total_bins, math.inf
    for i in range(quantized_bins, total_bins + 1, step):
        reference = hist[:i].copy()
        reference[i - 1] += hist[i:].sum()
        kept = hist[:i]
        nonzero = kept != 0
        group = (np.arange(i) * quantized_bins) // i
        totals = np.bincount(group, weights=kept, minlength=quantized_bins)
        counts = np.bincount(group, weights=nonzero.astype(np.float64), minlength=quantized_bins)
        expanded = np.where(nonzero, totals[group] / np.maximum(counts[group], 1), 0.0)
        p_sum, q_sum = reference.sum(), expanded.sum()
        if p_sum == 0 or q_sum == 0:
            continue
        p = reference / p_sum
        q = expanded / q_sum
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_bins, best_kl = i, kl
    return best_bins


def compute_ranges(
    stats: dict[str, TensorStats], method: str, *, percentile: float = 99.999
) -> dict[str, tuple[float, float]]:
    """(lowest, highest) per tensor for ``method``; tensors without data are left out."""
    if method not in CALIBRATION_METHODS:
        choices = ", ".join(CALIBRATION_METHODS)
        raise QuantizationError(f"unknown calibration method '{method}'; choose one of {choices}")
    ranges: dict[str, tuple[float, float]] = {}
    for name, entry in stats.items():
        if entry.elements == 0:
            continue
        if method == "minmax" or entry.histogram is None or entry.absmax == 0:
            ranges[name] = (entry.minimum, entry.maximum)
            continue
        width = entry.absmax / entry.histogram.size
        if method == "percentile":
            cdf = np.cumsum(entry.histogram) / entry.histogram.sum()
            index = int(np.searchsorted(cdf, percentile / 100.0))
            threshold = (min(index, entry.histogram.size - 1) + 1) * width
        else:
            threshold = _kl_threshold_bins(entry.histogram) * width
        ranges[name] = (max(entry.minimum, -threshold), min(entry.maximum, threshold))
    return ranges


def unobserved(stats: dict[str, TensorStats]) -> list[TensorStats]:
    return [entry for entry in stats.values() if entry.elements == 0]


def huge(stats: dict[str, TensorStats]) -> list[TensorStats]:
    return [entry for entry in stats.values() if entry.elements and entry.absmax > HUGE_RANGE]


def write_ort_cache(ranges: dict[str, tuple[float, float]], method: str, path: Path) -> None:
    """Write ``ranges`` as an ONNX Runtime calibration cache for ``quantize_static``."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    enum = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    data = {
        name: TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
        for name, (low, high) in ranges.items()
    }
    save_tensors_data(TensorsData(enum, data), path)
