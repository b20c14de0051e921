"""``Measurement``: one (variant, profile) result as a value that keeps its raw samples.

Stored as one JSON document per measurement (``schema_version`` 1), written atomically with the one
JSON encoder (``edgeopt.core.fileio``: a non-finite float is the string ``"NaN"``/``"Infinity"``).

A stored measurement is checked when it is read, not trusted: ``latency.summary_ms`` is typed
(:class:`LatencySummary`: every number finite, ``n`` >= 1), ``samples_ns`` must hold ``n`` non-negative
samples, and the summary is recomputed from the samples and must agree with the stored one (to a
relative 1e-9, room for another JSON formatter, none for an edit).  A document that fails any of this
was modified or is corrupt: the gate, report and compare loaders (``edgeopt.measure.stored``) refuse
it (exit 3), while :func:`try_load` (a resumed run) treats it, like a truncated, foreign or other
``schema_version`` document, as absent and measures again.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from edgeopt.core.fileio import read_json, write_json_atomic
from edgeopt.core.revision import git_output
from edgeopt.core.stability import StabilityReport, stability_report
from edgeopt.core.stats import CI_METHOD, ESTIMATOR, PERCENTILES, SampleSummary, summarize

if TYPE_CHECKING:
    from edgeopt.models.variants import Variant

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


def split_row_name(name: str) -> tuple[str, str]:
    """A row's name back into (variant, runtime): ``int8-nncf@openvino-fp32`` → (``int8-nncf``,
    ``openvino-fp32``); a plain name ran on ONNX Runtime (``onnxruntime``)."""
    variant, sep, runtime = name.partition("@")
    return variant, runtime if sep else "onnxruntime"


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FailureKind
    message: str
    returncode: int | None = None
    stderr_tail: str = ""
    exit_code: int = 4


class VariantRecord(BaseModel):
    """``variant``: the measured model file as it was when measured (what a rerun checks it against)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: str = ""
    precision: str
    sha256: str | None = None
    size_bytes: StrictInt = Field(ge=0)
    provenance: dict[str, Any] = {}

    @classmethod
    def of(cls, variant: Variant) -> VariantRecord:
        return cls(name=variant.name, path=str(variant.path), precision=variant.precision, sha256=variant.sha256,
                   size_bytes=variant.size_bytes, provenance=variant.provenance)


class ProfileRecord(BaseModel):
    """``profile``: the hardware profile measured on, by name and digest, with its settings as they were."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    digest: str | None = None
    settings: dict[str, Any] = {}  # HardwareProfile.model_dump(mode="json"); absent in emulation records

    @property
    def budgets(self) -> dict[str, Any]:
        """The profile's budgets as stored (empty when none were declared)."""
        return dict(self.settings.get("budgets") or {})

    @property
    def runtimes(self) -> dict[str, Any]:
        return dict(self.settings.get("runtime") or {})


class MemoryRecord(BaseModel):
    """``memory``: the worker's resident memory, in MiB."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    baseline_rss_mb: float | None = Field(default=None, ge=0)
    peak_rss_mb: float = Field(ge=0)
    model_added_mb: float | None = Field(default=None, ge=0)
    method: str = ""


class PercentileSummary(BaseModel):
    """One stored percentile with its confidence interval (``edgeopt.core.stats.PercentileEstimate``), in ms."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    q: float = Field(gt=0, le=1)
    value: float = Field(ge=0)
    lower: float | None = Field(default=None, ge=0)
    upper: float | None = Field(default=None, ge=0)
    lower_rank: int | None = Field(default=None, ge=1)
    upper_rank: int | None = Field(default=None, ge=1)
    confidence: float = Field(gt=0, lt=1)


class LatencySummary(BaseModel):
    """``latency.summary_ms``: the statistics of the samples in ms (``edgeopt.core.stats.SampleSummary``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    n: int = Field(ge=1)
    mean: float = Field(ge=0)
    std: float = Field(ge=0)
    cv: float = Field(ge=0)
    min: float = Field(ge=0)
    max: float = Field(ge=0)
    percentiles: dict[str, PercentileSummary]
    confidence: float = Field(gt=0, lt=1)
    estimator: str = ESTIMATOR
    ci_method: str = CI_METHOD

    def sample_summary(self) -> SampleSummary:
        return SampleSummary.from_dict(self.model_dump())


SUMMARY_REL_TOL = 1e-9  # stored vs recomputed statistics: float formatting, not an edit


def summary_differences(stored: LatencySummary, samples_ns: list[int]) -> list[str]:
    """Where ``stored`` disagrees with the summary recomputed from ``samples_ns`` (empty when it agrees)."""
    fresh = summarize([s / 1e6 for s in samples_ns], confidence=stored.confidence)
    found: list[str] = []

    def differ(a: float | int | None, b: float | int | None) -> bool:
        if a is None or b is None:
            return a is not b
        return not math.isclose(float(a), float(b), rel_tol=SUMMARY_REL_TOL, abs_tol=1e-12)

    if stored.n != fresh.n:
        found.append(f"summary_ms.n is {stored.n} but samples_ns holds {fresh.n} samples")
    for name in ("mean", "std", "cv", "min", "max"):
        if differ(getattr(stored, name), getattr(fresh, name)):
            found.append(f"summary_ms.{name} is {getattr(stored, name)!r}, the samples give {getattr(fresh, name)!r}")
    if set(stored.percentiles) != set(PERCENTILES):
        found.append(f"summary_ms.percentiles holds {sorted(stored.percentiles)}, expected {sorted(PERCENTILES)}")
    for key, estimate in fresh.percentiles.items():
        kept = stored.percentiles.get(key)
        if kept is None:
            continue
        for name in ("q", "value", "lower", "upper", "lower_rank", "upper_rank", "confidence"):
            if differ(getattr(kept, name), getattr(estimate, name)):
                found.append(f"summary_ms.percentiles.{key}.{name} is {getattr(kept, name)!r}, the samples give "
                              f"{getattr(estimate, name)!r}")
    return found


class Latency(BaseModel):
    """The raw samples of the timed loop and their summary, which must be the samples' (checked on every
    construction and load: :func:`summary_differences`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    samples_ns: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    summary_ms: LatencySummary
    stop_reason: str
    loop_wall_ms: float = Field(ge=0)
    throughput_per_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _summary_is_the_samples(self) -> Latency:
        found = summary_differences(self.summary_ms, self.samples_ns)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise ValueError(f"the stored statistics are not those of the stored samples: {found[0]}{more}")
        return self

    def summary(self) -> SampleSummary:
        return self.summary_ms.sample_summary()

    @classmethod
    def from_samples(cls, samples_ns: list[int], stop_reason: str, loop_wall_ns: int, confidence: float) -> Latency:
        summary = summarize([s / 1e6 for s in samples_ns], confidence=confidence)
        throughput = len(samples_ns) / (loop_wall_ns / 1e9) if loop_wall_ns > 0 else 0.0
        return cls(samples_ns=samples_ns, summary_ms=LatencySummary.model_validate(summary.to_dict()),
                   stop_reason=stop_reason, loop_wall_ms=loop_wall_ns / 1e6, throughput_per_s=throughput)


class Measurement(BaseModel):
    """Everything one measurement of one variant on one profile produced, or why it failed."""

    # non-finite floats stay floats in model_dump(mode="json") (pydantic's default writes null in the
    # dict-valued fields); the JSON encoder then writes them as strings (edgeopt.core.fileio)
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["measurement"] = "measurement"
    key: str
    status: Literal["ok", "failed"]
    variant: VariantRecord
    profile: ProfileRecord
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
    memory: MemoryRecord | None = None
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
    # measured by the device lab (edgeopt.lab): node_id, node_ip, hostname, started_at, ended_at (ISO 8601 UTC),
    # attempts, lost_nodes; absent for a measurement made on this host
    lab: dict[str, Any] | None = None
    created_at: str
    commit: str | None = None

    @model_validator(mode="after")
    def _status_has_its_section(self) -> Measurement:
        """An ``ok`` measurement has its latency, a ``failed`` one its failure."""
        problems = []
        if self.status == "ok" and self.latency is None:
            problems.append("status is 'ok' but there is no latency")
        if self.status == "failed" and self.failure is None:
            problems.append("status is 'failed' but there is no failure")
        if problems:
            raise ValueError("; ".join(problems))
        return self

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
        return row_name(self.variant.name, self.backend, str(precision) if precision else None)

    @property
    def profile_name(self) -> str:
        return self.profile.name

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
        """The measurement at ``path``, bounded-read and validated (OSError, ValueError or ValidationError).
        ``edgeopt.measure.stored.load_measurement`` is the loader that names the file in one error."""
        return cls.model_validate(read_json(Path(path)))


def try_load(path: Path) -> Measurement | None:
    """The stored measurement at ``path``, or None when absent, unreadable, too large or deep, invalid, or
    modified (its statistics not those of its samples): a resumed run measures it again."""
    try:
        return Measurement.load(path)
    except (OSError, ValueError, ValidationError):
        return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: Path | None = None) -> str | None:
    return git_output(cwd, "rev-parse", "HEAD") or None
