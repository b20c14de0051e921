"""What the store holds of a run: one ``RunRecord`` (its fingerprint) with one ``ResultRecord`` per measured row.

Built from what a run leaves on disk (a run folder's ``summary.json`` and measurements, ``profile``'s measurement
files, an ``ab`` document) or from MLflow (``edgeopt.history.mlflow_import``); the store
(``edgeopt.history.store``) writes a record in one transaction and never twice (``uid``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResultRecord:
    """One measured (variant, profile) row of a run, with the figures the history follows."""

    model: str
    profile: str
    variant: str  # without ``@runtime``
    runtime: str  # ``onnxruntime``, ``openvino-bf16``...
    status: str  # ok, failed, unsupported...
    verdict: str  # the gate's verdict of the row
    model_sha256: str | None = None
    variant_sha256: str | None = None
    p50_ms: float | None = None
    p50_lower: float | None = None
    p50_upper: float | None = None
    p95_ms: float | None = None
    p95_lower: float | None = None
    p95_upper: float | None = None
    samples: int | None = None
    peak_rss_mb: float | None = None
    size_mb: float | None = None
    fidelity_cosine: float | None = None  # the worst output's mean cosine to fp32
    host_matches: bool | None = None
    proxy: bool = False
    # the measurement document's sha256: a run that reused a stored measurement (a resumed or repeated run into
    # the same folder) adds no second point for it
    measurement_sha256: str | None = None
    # the host that measured this row (a lab run's rows come from different boards)
    hostname: str | None = None
    host_fingerprint: str | None = None
    cpu_model: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run: where and on what it measured (its fingerprint) and its rows."""

    uid: str  # unique per run: the sha256 of its document (summary.json, ab JSON...), so a re-import adds nothing
    kind: str  # run | profile | ab | mlflow
    recorded_at: str  # ISO 8601 UTC: when it measured (its earliest measurement)
    source: str  # the run folder, result file or ``mlflow:<tracking uri>#<run id>`` it was read from
    results: tuple[ResultRecord, ...]
    commit: str | None = None  # the measured project's git commit
    branch: str | None = None
    dirty: bool | None = None  # uncommitted changes in the work tree
    hostname: str | None = None  # of the run's first measured row (each result has its own)
    host_fingerprint: str | None = None  # short hash of the CPU model, cores, memory, OS, arch
    cpu_model: str | None = None
    edgeopt_version: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)  # runtime versions (onnxruntime, openvino...)
    report: str | None = None  # the run's report.html (else summary.md, else the result file)
    exit_code: int | None = None
    verdict: str | None = None  # the run's verdict line
