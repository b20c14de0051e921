"""One recommendation per profile of a run: the fastest row that passes every budget, said with its evidence.

The candidates are the rows measured on the profile whose gate verdict is ``pass`` (every budget judged and met:
latency, memory, fidelity, the eval metric) and that were timed (status ``ok``: a TensorRT row emulated for accuracy
has no CPU time to rank and is never one). The fastest is the lowest p50; rows whose p50 interval overlaps the
fastest one's are ties, said by name, because the data cannot order them. When the fastest passing row is the fp32
reference itself, the recommendation is to keep fp32: no quantized variant is both faithful and faster. When no row
passes, it says why: none was judged on this host (the profile's hardware is elsewhere; ``--proxy`` judges on this
host as a proxy), or none met every budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgeopt.evaluate.fidelity import worst
from edgeopt.measure.stored import NOT_APPLICABLE_STATUS
from edgeopt.reports.table import Row

PASS = "pass"


@dataclass(frozen=True)
class Recommendation:
    """The recommended row of one profile (``variant`` None: no row passes; ``reason`` says why)."""

    profile: str
    variant: str | None = None
    runtime: str | None = None
    p50_ms: float | None = None
    p50_lower: float | None = None
    p50_upper: float | None = None
    speedup: tuple[float, float, float] | None = None  # fp32's p50 / this row's, with its interval
    fidelity: str | None = None  # the worst output's figures vs fp32 (None for fp32 itself)
    ties: tuple[str, ...] = ()  # variant@runtime of the passing rows whose p50 interval overlaps this one's
    keep_fp32: bool = False  # the fastest passing row is the fp32 model (on some runtime)
    proxy: bool = False
    reason: str = ""

    def line(self) -> str:
        """``recommended on PROFILE: VARIANT@RUNTIME — fastest row that passes every budget (p50 ..., Δ vs fp32,
        fidelity)``, or why there is none."""
        label = f"{'PROXY ' if self.proxy else ''}recommended on {self.profile}"
        if self.variant is None:
            return f"{label}: none — {self.reason}"
        interval = (f" [{self.p50_lower:.4g}, {self.p50_upper:.4g}]"
                    if self.p50_lower is not None and self.p50_upper is not None else "")
        parts = [f"p50 {self.p50_ms:.4g} ms{interval}"]
        reference_row = self.keep_fp32 and str(self.runtime).split()[0] == "onnxruntime"
        if self.speedup is not None and not reference_row:
            parts.append(f"{self.speedup[0]:.2f}x fp32 [{self.speedup[1]:.2f}, {self.speedup[2]:.2f}]")
        if self.keep_fp32:
            parts.append("keep fp32: no quantized row is faster and within every budget")
        elif self.fidelity:
            parts.append(self.fidelity)
        text = f"{label}: {self.label} — fastest row that passes every budget ({'; '.join(parts)})"
        if self.ties:
            text += f"; tied within the p50 intervals: {', '.join(self.ties)}"
        return text

    @property
    def label(self) -> str:
        """``variant@runtime`` of the recommended row (its variant names the runtime already off ONNX Runtime)."""
        return str(self.variant) if "@" in str(self.variant) else f"{self.variant}@{self.runtime}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["speedup"] = list(self.speedup) if self.speedup is not None else None
        data["ties"] = list(self.ties)
        data["line"] = self.line()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recommendation:
        fields = {k: v for k, v in data.items() if k != "line"}
        speedup = fields.get("speedup")
        fields["speedup"] = tuple(float(v) for v in speedup) if speedup is not None else None
        fields["ties"] = tuple(fields.get("ties") or ())
        return cls(**fields)


def row_label(row: Row) -> str:
    """``variant@runtime``: a row's name says its runtime already for every runtime but ONNX Runtime's."""
    return row.variant if "@" in row.variant else f"{row.variant}@{row.runtime}"


def _interval(row: Row) -> tuple[float, float, float]:
    estimate = row.p50_ms or {}
    value = float(estimate["value"])
    lower, upper = estimate.get("lower"), estimate.get("upper")
    return value, float(lower) if lower is not None else value, float(upper) if upper is not None else value


def _fidelity(row: Row) -> str | None:
    figures = worst(row.fidelity)
    parts = [f"cos {figures['cosine']:.4f}"] if "cosine" in figures else []
    parts += [f"top1 {100 * figures['top1']:.1f}%"] if "top1" in figures else []
    parts += [f"decision {100 * figures['decision']:.1f}%"] if "decision" in figures else []
    if row.metrics and row.metrics[0].delta is not None:
        parts.append(f"{row.metrics[0].metric} {row.metrics[0].format_delta()}")
    return ", ".join(parts) or None


def recommend(rows: Sequence[Row], profile: str, reference: str = "fp32") -> Recommendation:
    """The recommendation for ``profile`` among ``rows`` (module docstring); ``reference``: the fp32 row's variant."""
    mine = [r for r in rows if r.profile == profile]
    passing = [r for r in mine if r.verdict == PASS and r.status == "ok" and r.p50_ms is not None]
    if not passing:
        if mine and all(r.verdict in (NOT_APPLICABLE_STATUS, "unsupported", "error", "n/a") for r in mine) \
                and any(r.verdict == NOT_APPLICABLE_STATUS for r in mine):
            reason = ("no row was judged on this host: it is not the profile's hardware (measure there, or pass "
                      "--proxy to judge on this host as a proxy)")
        elif not mine:
            reason = "nothing was measured"
        else:
            reason = "no row passes every budget (see the failed and inconclusive checks)"
        return Recommendation(profile, reason=reason)
    best = min(passing, key=lambda r: _interval(r)[0])
    value, lower, upper = _interval(best)
    ties = tuple(row_label(r) for r in sorted(passing, key=lambda r: _interval(r)[0])
                 if r is not best and _interval(r)[1] <= upper and lower <= _interval(r)[2])
    keep = best.variant.split("@")[0] == reference
    return Recommendation(profile, best.variant, best.runtime, value, lower, upper, best.speedup,
                          None if keep else _fidelity(best), ties, keep, best.proxy)


def recommend_all(rows: Sequence[Row], profiles: Sequence[str]) -> list[Recommendation]:
    """One :class:`Recommendation` per profile, in the run's profile order."""
    return [recommend(rows, profile) for profile in profiles]
