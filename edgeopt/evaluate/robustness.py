"""Robustness under input shift: shifted copies of the eval images, and each variant's degradation under them.

Images only (NCHW float arrays, H and W the last two axes).  Each shift is applied in the images'
**value space**: the range ``[low, high]`` pixel values live in (digits: [0, 1]).  For normalised
inputs (``(pixel·scale − mean) / std``, as a calibration manifest's ``preprocess`` declares) the
images are first un-normalised with that mean/std, shifted in pixel space ``[0, 255·scale]``, then
normalised again.  Default severities (``name:SEVERITY`` overrides; r = high − low):

- ``brightness`` 0.3: add 0.3·r (a brighter scene), clipped to the range;
- ``contrast`` 0.5: pull every pixel halfway to its image-and-channel mean (contrast halved), clipped;
- ``noise`` 0.1: add Gaussian noise of σ = 0.1·r (seeded: ``default_rng(seed)``), clipped;
- ``blur`` 1.0: separable Gaussian filter of σ = 1.0 pixel (kernel radius ⌈3σ⌉, edge pixels replicated).

The same seed gives the same shifted images.  Each shifted set is one more reference set the worker
runs on every row, so it is measured on the deployed backend.  Per variant and shift the report gives
the metric, its paired change vs fp32 under the *same* shift, and the *extra* degradation beyond the
clean-data change (a paired difference of differences over the same samples); a variant is
**fragile** under a shift when that extra degradation's 95 % interval lies wholly above zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import ConfigError
from edgeopt.evaluate.metrics import CONFIDENCE, Resamples, Scores, aggregate, bootstrap_interval, short_cell
from edgeopt.models.calibration import Preprocess, load_manifest

DEFAULT_SEVERITY: dict[str, float] = {"brightness": 0.3, "contrast": 0.5, "noise": 0.1, "blur": 1.0}
SHIFT_SEED = 0


@dataclass(frozen=True)
class Shift:
    name: str
    severity: float

    @property
    def label(self) -> str:
        """``noise`` at the default severity, else ``noise:0.2``."""
        return self.name if self.severity == DEFAULT_SEVERITY[self.name] else f"{self.name}:{self.severity:g}"


def parse_shifts(items: Sequence[str]) -> tuple[Shift, ...]:
    """``brightness``, ``noise:0.2``, ``all`` (every shift at its default severity); duplicates dropped."""
    shifts: list[Shift] = []
    for item in items:
        name, _, severity_text = item.strip().partition(":")
        names = list(DEFAULT_SEVERITY) if name == "all" else [name]
        for one in names:
            if one not in DEFAULT_SEVERITY:
                raise ConfigError(f"--shift {item}: unknown shift; known: {', '.join(DEFAULT_SEVERITY)}, all")
            try:
                severity = float(severity_text) if severity_text else DEFAULT_SEVERITY[one]
            except ValueError:
                raise ConfigError(f"--shift {item}: severity must be a number, e.g. noise:0.2") from None
            if not math.isfinite(severity) or severity < 0:
                raise ConfigError(f"--shift {item}: severity must be a finite number >= 0")
            shift = Shift(one, severity)
            if shift not in shifts:
                shifts.append(shift)
    return tuple(shifts)


@dataclass(frozen=True)
class ValueSpace:
    """Where pixel values live: ``[low, high]``, and the per-channel normalisation applied after it (if any)."""

    low: float
    high: float
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = "declared"

    def describe(self) -> str:
        text = f"pixel range [{self.low:g}, {self.high:g}] ({self.source})"
        if self.mean is not None and self.std is not None:
            text += f", normalised with mean {list(self.mean)} std {list(self.std)}"
        return text

    def _channel(self, values: tuple[float, ...], images: np.ndarray) -> np.ndarray:
        shape = [1] * images.ndim
        if images.ndim >= 3 and images.shape[1] == len(values):
            shape[1] = len(values)
            return np.asarray(values, dtype=np.float64).reshape(shape)
        return np.asarray(values[:1], dtype=np.float64).reshape(shape)

    def to_pixels(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float64)
        if self.mean is None or self.std is None:
            return x
        return x * self._channel(self.std, x) + self._channel(self.mean, x)  # = pixel·scale

    def from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            return pixels
        return (pixels - self._channel(self.mean, pixels)) / self._channel(self.std, pixels)


def value_space(images: np.ndarray, *, declared: tuple[float, float] | None = None,
                calibration: str | None = None) -> ValueSpace:
    """The value space shifts act in: ``declared`` (``--shift-range``), else a calibration folder's
    ``preprocess`` normalisation, else [0, 1] when every eval value is in it, else the observed [min, max]."""
    if declared is not None:
        low, high = declared
        if not high > low:
            raise ConfigError(f"--shift-range {low:g}:{high:g}: needs LOW < HIGH")
        return ValueSpace(float(low), float(high), source="--shift-range")
    if calibration and Path(calibration, "manifest.yaml").is_file():
        # the one strict, bounded manifest reader (a bad manifest is CalibrationError, exit 3, naming it)
        manifest = load_manifest(Path(calibration, "manifest.yaml"))
        preprocess = getattr(manifest, "preprocess", None)
        if isinstance(preprocess, Preprocess) and {"mean", "std"} <= preprocess.model_fields_set:
            return ValueSpace(0.0, 255.0 * preprocess.scale, tuple(map(float, preprocess.mean)),
                              tuple(map(float, preprocess.std)), source=f"{calibration}/manifest.yaml preprocess")
    low, high = float(np.min(images)), float(np.max(images))
    if low >= 0.0 and high <= 1.0:
        return ValueSpace(0.0, 1.0, source="eval values all in [0, 1]")
    return ValueSpace(low, high, source="observed min/max of the eval images (declare it with --shift-range)")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` pixels, radius ⌈3σ⌉."""
    if sigma <= 0:
        return np.ones(1)
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (H, W), edge pixels replicated."""
    kernel = gaussian_kernel(sigma)
    radius = kernel.size // 2
    out = np.asarray(images, dtype=np.float64)
    for axis in (-2, -1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        out = sum(kernel[i] * np.take(padded, np.arange(i, i + length), axis=axis) for i in range(kernel.size))
    return out


def apply_shift(images: np.ndarray, shift: Shift, space: ValueSpace, seed: int = SHIFT_SEED) -> np.ndarray:
    """``images`` shifted as documented above, in the same dtype and shape."""
    if images.ndim < 3:
        raise ConfigError(f"shift {shift.name}: needs images with H and W as the last two axes, got shape "
                          f"{images.shape}")
    pixels = space.to_pixels(images)
    span = space.high - space.low
    if shift.name == "brightness":
        shifted = pixels + shift.severity * span
    elif shift.name == "contrast":
        centre = pixels.mean(axis=(-2, -1), keepdims=True)
        shifted = centre + shift.severity * (pixels - centre)
    elif shift.name == "noise":
        shifted = pixels + np.random.default_rng(seed).normal(0.0, shift.severity * span, size=pixels.shape)
    elif shift.name == "blur":
        shifted = blur(pixels, shift.severity)
    else:  # parse_shifts refuses anything else
        raise ConfigError(f"unknown shift {shift.name}")
    shifted = np.clip(shifted, space.low, space.high)
    return space.from_pixels(shifted).astype(images.dtype)


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class ShiftResult:
    """One metric of one variant under one shift, vs fp32 under the same shift and vs its own clean change."""

    shift: str
    metric: str
    value: float
    lower: float
    upper: float
    samples: int
    percent: bool = False
    higher_is_better: bool = True
    delta: float | None = None  # variant − fp32, both on the shifted inputs (paired)
    delta_lower: float | None = None
    delta_upper: float | None = None
    extra_drop: float | None = None  # (drop vs fp32 under the shift) − (drop vs fp32 on clean data), paired
    extra_drop_lower: float | None = None
    extra_drop_upper: float | None = None
    change_vs_clean: float | None = None  # relative change of this variant's own value: shifted / clean − 1
    fragile: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShiftResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def format_cell(self) -> str:
        cell = short_cell(self.value, self.percent, self.delta, self.delta_lower, self.delta_upper)
        return cell + (" FRAGILE" if self.fragile else "")


def shift_result(shift: str, shifted: Scores, clean: Scores | None, fp32_shifted: Scores | None,
                 fp32_clean: Scores | None, resamples: Resamples) -> ShiftResult:
    """The metric under ``shift`` with its paired comparisons; all score arrays are over the same samples."""
    spec = shifted.spec
    how = spec.aggregate
    value, lower, upper = bootstrap_interval(shifted.values, how, resamples)
    sign = 1.0 if spec.higher_is_better else -1.0  # drop = sign·(fp32 − variant): positive is worse
    tail = (1 - CONFIDENCE) / 2
    result: dict[str, Any] = {}
    if fp32_shifted is not None:
        d = resamples.stats(lambda rows: aggregate(shifted.values[rows], how, axis=1)
                            - aggregate(fp32_shifted.values[rows], how, axis=1))
        lo, hi = np.quantile(d, [tail, 1 - tail])
        result.update(delta=float(aggregate(shifted.values, how) - aggregate(fp32_shifted.values, how)),
                      delta_lower=float(lo), delta_upper=float(hi))
        if clean is not None and fp32_clean is not None:
            def drop(var: np.ndarray, ref: np.ndarray, axis: int | None) -> Any:
                return sign * (aggregate(ref, how, axis=axis) - aggregate(var, how, axis=axis))

            extra = resamples.stats(lambda rows: drop(shifted.values[rows], fp32_shifted.values[rows], 1)
                                    - drop(clean.values[rows], fp32_clean.values[rows], 1))
            lo, hi = np.quantile(extra, [tail, 1 - tail])
            point = (drop(shifted.values, fp32_shifted.values, None) - drop(clean.values, fp32_clean.values, None))
            result.update(extra_drop=float(point), extra_drop_lower=float(lo), extra_drop_upper=float(hi),
                          fragile=bool(lo > 0))
    if clean is not None:
        base = float(aggregate(clean.values, how))
        result["change_vs_clean"] = value / base - 1.0 if base != 0 else None
    return ShiftResult(shift=shift, metric=spec.name, value=value, lower=lower, upper=upper,
                       samples=int(shifted.values.size), percent=spec.percent,
                       higher_is_better=spec.higher_is_better, **result)
