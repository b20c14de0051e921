"""``Measurement``: one (variant, profile) result as a value that keeps its raw samples.

Stored as one JSON document per measurement (``schema_version`` 1), written atomically.
A document that cannot be read back (truncated, foreign, another ``schema_version``) is treated
as absent, so a resumed run measures it again instead of trusting it.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeopt.core.fileio import write_json_atomic
from edgeopt.core.stability import StabilityReport, stability_report
from edgeopt.core.stats import SampleSummary, summarize

SCHEMA_VERSION: Literal[1] = 1


FailureKind = Literal["crash", "timeout", "memory", "backend", "provider-fallback", "no-result", "unsupported",
                      "unavailable"]


PLAIN_NAME_BACKENDS = ("onnxruntime", "onnxruntime-gpu")  # ONNX Runtime rows carry the variant's plain name


def row_name(variant: str, backend: str, precision: str | None) -> str:
    """The one name of a (variant, backend, precision) row in gates, reports, comparisons and measurement files:
    ``fp32`` on ONNX Runtime, ``fp32@openvino-bf16`` elsewhere (``fp32@<backend>`` without a precision)."""
    if backend in PLAIN_NAME_BACKENDS:
        return variant
    return f"{variant}@{backend}-{precision}" if precision else f"{variant}@{backend}"


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FailureKind
    message: str
    returncode: int | None = None
    stderr_tail: str = ""
    exit_code: int = 4


class Latency(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    samples_ns: list[int]
    summary_ms: dict[str, Any]
    stop_reason: str
    loop_wall_ms: float
    throughput_per_s: float

    def summary(self) -> SampleSummary:
        return SampleSummary.from_dict(self.summary_ms)

    @classmethod
    def from_samples(cls, samples_ns: list[int], stop_reason: str, loop_wall_ns: int, confidence: float) -> Latency:
        summary = summarize([s / 1e6 for s in samples_ns], confidence=confidence)
        throughput = len(samples_ns) / (loop_wall_ns / 1e9) if loop_wall_ns > 0 else 0.0
        return cls(samples_ns=samples_ns, summary_ms=summary.to_dict(), stop_reason=stop_reason,
                   loop_wall_ms=loop_wall_ns / 1e6, throughput_per_s=throughput)


class Measurement(BaseModel):
    """Everything one measurement of one variant on one profile produced, or why it failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["measurement"] = "measurement"
    key: str
    status: Literal["ok", "failed"]
    variant: dict[str, Any]
    profile: dict[str, Any]
    host: dict[str, Any]
    host_matches: bool
    mismatch_reasons: list[str]
    proxy: bool
    expected_fast: bool
    session: dict[str, Any]
    bench: dict[str, Any]
    latency: Latency | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    memory: dict[str, Any] | None = None
    runtime_details: dict[str, Any] = {}
    providers_requested: list[str] = []
    providers_active: list[str] = []
    warmup_iterations: int | None = None
    reference_count: int | None = None
    versions: dict[str, Any] = {}
    outputs_file: str | None = None
    output_names: list[str] = []
    torch_imported: bool | None = None
    stability: dict[str, Any] | None = None  # StabilityReport.to_dict(); absent in documents before it existed
    input_shapes: dict[str, list[int]] = {}  # the concrete shape of every timed input; absent in older documents
    failure: Failure | None = None
    created_at: str
    commit: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def backend(self) -> str:
        return str(self.session.get("backend", "onnxruntime"))

    @property
    def runtime_label(self) -> str:
        """``onnxruntime``, or e.g. ``openvino bf16``: the runtime and the precision it was asked to compute in."""
        precision = self.session.get("precision")
        return f"{self.backend} {precision}" if precision else self.backend

    @property
    def unsupported(self) -> bool:
        """The backend refused the model (or is not installed): a row with a reason, not a failure."""
        return self.failure is not None and self.failure.kind in ("unsupported", "unavailable")

    @property
    def variant_name(self) -> str:
        """The row's name (:func:`row_name`): the variant's name, suffixed ``@<backend>-<precision>`` when not
        measured on ONNX Runtime, so every (variant, runtime) row has its own name."""
        precision = self.session.get("precision")
        return row_name(str(self.variant["name"]), self.backend, str(precision) if precision else None)

    @property
    def profile_name(self) -> str:
        return str(self.profile["name"])

    def stability_report(self) -> StabilityReport | None:
        """The stability diagnosis; for a document stored without one, rebuilt from the raw samples
        (the system state then reads "not recorded").  None for a failed measurement."""
        if self.stability is not None:
            return StabilityReport.from_dict(self.stability)
        if self.latency is None or len(self.latency.samples_ns) < 2:
            return None
        return stability_report(self.latency.samples_ns, None)

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> Measurement:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def try_load(path: Path) -> Measurement | None:
    """The stored measurement at ``path``, or None when absent or unreadable."""
    try:
        return Measurement.load(path)
    except (OSError, ValueError, ValidationError):
        return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
