"""The values the history is read as: a series key, its points (one per stored run, oldest first) and a series.

Plain frozen dataclasses, no database types: the change-point detection, the dashboard and the CLI read these,
whatever store (SQLite, PostgreSQL) or import (run folders, MLflow) the points came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class SeriesKey:
    """What one series follows: a model on a hardware profile, as one variant on one runtime."""

    model: str
    profile: str
    variant: str  # the variant's own name (``int8-static-minmax``), without ``@runtime``
    runtime: str  # ``onnxruntime``, ``openvino-bf16``, ``tensorrt-fp16``...

    def label(self) -> str:
        return f"{self.model} · {self.profile} · {self.variant}@{self.runtime}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class SeriesPoint:
    """One stored run's figures for a key; latencies in ms with their 95 % interval (None when not recorded)."""

    run_id: int  # the store's id of the run (stable, increasing in the order runs were appended)
    recorded_at: str  # ISO 8601 UTC: when the run measured
    commit: str | None  # the measured project's git commit (CI's variables first), None outside a repository
    branch: str | None
    hostname: str | None
    host_fingerprint: str | None  # short hash of the CPU model, core count, memory, OS and arch: a runner image
    p50_ms: float | None
    p50_lower: float | None
    p50_upper: float | None
    p95_ms: float | None
    p95_lower: float | None
    p95_upper: float | None
    samples: int | None
    peak_rss_mb: float | None
    fidelity_cosine: float | None
    verdict: str  # the gate's verdict of the row (pass, fail, inconclusive, invalid, n/a)
    report: str | None  # where the run's report is: its report.html, summary.md or result file (path or URL)

    def value(self, statistic: str) -> float | None:
        """``p50`` or ``p95`` in ms."""
        return getattr(self, f"{statistic}_ms")

    def interval(self, statistic: str) -> tuple[float | None, float | None]:
        return getattr(self, f"{statistic}_lower"), getattr(self, f"{statistic}_upper")

    def short_commit(self) -> str:
        return self.commit[:10] if self.commit else "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Series:
    """Every stored point of one key, oldest first (by run time, then store id)."""

    key: SeriesKey
    points: tuple[SeriesPoint, ...]
