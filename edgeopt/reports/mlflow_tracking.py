"""Log a finished run folder to MLflow: params, metrics and reports, one MLflow run per (variant, profile).

Layout in the experiment: one **parent run** per ``log_run`` call (the edgeopt run folder: model,
calibration, profiles, verdict, exit code; artifacts ``summary.json``, ``summary.md`` and, when present,
``report.html``, ``junit.xml``, ``results.csv``; the measured project's git revision as MLflow's
``mlflow.source.git.commit`` tag with ``edgeopt.git_branch``/``edgeopt.git_dirty``, and ``edgeopt.created_at``)
and one **child run** per (variant, profile) row, nested under it with MLflow's ``mlflow.parentRunId`` tag:
params (model and its sha256, variant, its name and runtime apart, recipe, precision, profile, session and
bench settings, budgets, versions, host, when it was measured), metrics (p50/p90/p95/p99 with their confidence
bounds, peak RSS, size, speed-up, fidelity with the lowest cosine across outputs and slices, accuracy, stability
figures) and the measurement JSON (raw samples included) as an artifact.  A variant that could not be made, or a
failed measurement, is a child run with status FAILED and the failure message as a tag.  What is logged is enough
to rebuild the run's regression-history record (``edgeopt.history.mlflow_import``).

mlflow (``pip install edgeopt[tracking]``, the ``mlflow-skinny`` package) is imported only when logging;
without it :func:`log_run` raises ``BackendUnavailableError``.  The client talks to any MLflow tracking
URI: an ``http(s)://`` server, Databricks, a database URI (``sqlite:///mlflow.db``: needs the full
``mlflow`` package) or a local file store (``file:///path``: MLflow 3 refuses it unless
``MLFLOW_ALLOW_FILE_STORE=true`` is set).  Credentials in the URI (``https://user:token@host``) are never
repeated: :func:`without_credentials` strips them from every URI and message edgeopt writes.  Details:
docs/tracking.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt import __version__
from edgeopt.errors import BackendError, BackendUnavailableError, ConfigError, first_line

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from edgeopt.measure.results import Measurement
    from edgeopt.reports.run_summary import RunSummary
    from edgeopt.reports.table import Row

__all__ = ["REPORT_ARTIFACTS", "TrackedRun", "log_run", "without_credentials"]

REPORT_ARTIFACTS: tuple[str, ...] = ("summary.json", "summary.md", "report.html", "junit.xml", "results.csv")
PARENT_TAG = "mlflow.parentRunId"  # how MLflow (UI, search) nests a run under another
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag for the source's commit (shown in the UI)
_MAX_PARAMS_PER_BATCH = 100  # MLflow's limits on one log_batch call (params and tags; metrics: 1000)
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_CHARS = 6000
_MAX_TAG_CHARS = 8000
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
# the userinfo of a URI: after ``scheme://``, everything up to the last ``@`` before the path (a password's own
# ``/`` must be percent-encoded; ``?``/``#``/``@`` written bare in one are stripped with it)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]*@")


def without_credentials(text: str) -> str:
    """``text`` with the userinfo (``user:password@``) of every URI in it removed: ``https://u:tok@host/x`` ->
    ``https://host/x``, ``postgresql://u:pw@h/db`` -> ``postgresql://h/db``.  For a tracking URI before it is
    stored or printed, and for an error message that may repeat it."""
    return _USERINFO.sub(r"\g<scheme>", text)


@dataclass(frozen=True)
class TrackedRun:
    """Where a run folder went: the experiment, the parent run and one child run per (variant, profile)."""

    tracking_uri: str  # without its credentials (``without_credentials``)
    experiment_id: str
    parent_run_id: str
    child_run_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (variant, profile) -> run id


def log_run(run_dir: Path | str, tracking_uri: str, experiment: str) -> TrackedRun:
    """Log the edgeopt run folder ``run_dir`` (what ``edgeopt run`` wrote) to MLflow.

    Creates the experiment when it does not exist.  Raises ``ConfigError`` for a folder without a
    readable ``summary.json`` (or one of its measurements unreadable), a tracking URI MLflow refuses or
    a deleted experiment; ``BackendUnavailableError`` when mlflow is not installed; ``BackendError``
    when MLflow fails while logging (the runs logged so far are marked FAILED).
    """
    from edgeopt.reports.run_summary import load_summary

    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    children = [_child_record(run_dir, summary, row) for row in summary.rows]
    mlflow = _import_mlflow()
    client = _client(mlflow, tracking_uri)
    experiment_id = _experiment(client, mlflow, experiment, tracking_uri)
    started: list[str] = []
    try:
        parent = client.create_run(experiment_id, run_name=_parent_name(summary),
                                   tags=_parent_tags(run_dir, summary))
        started.append(parent.info.run_id)
        _log(client, mlflow, parent.info.run_id, _parent_params(summary), _parent_metrics(summary), {})
        for name in REPORT_ARTIFACTS:
            if (run_dir / name).is_file():
                client.log_artifact(parent.info.run_id, str(run_dir / name))
        child_ids: dict[tuple[str, str], str] = {}
        for child in children:
            run = client.create_run(experiment_id, run_name=child.name,
                                    tags={PARENT_TAG: parent.info.run_id, **child.tags})
            started.append(run.info.run_id)
            _log(client, mlflow, run.info.run_id, child.params, child.metrics, {})
            if child.measurement_path is not None:
                client.log_artifact(run.info.run_id, str(child.measurement_path), "measurement")
            client.set_terminated(run.info.run_id, "FINISHED" if child.ok else "FAILED")
            child_ids[(child.variant, child.profile)] = run.info.run_id
        client.set_terminated(parent.info.run_id, "FINISHED")
    except (mlflow.exceptions.MlflowException, OSError) as error:
        for run_id in started:
            _terminate_quietly(client, run_id)
        raise BackendError(without_credentials(f"MLflow ({tracking_uri}): logging {run_dir} failed: "
                                               f"{first_line(error)}")) from error
    return TrackedRun(without_credentials(tracking_uri), experiment_id, parent.info.run_id, child_ids)


# ------------------------------------------------------------------------------------------ reading

@dataclass(frozen=True)
class _Child:
    variant: str
    profile: str
    ok: bool
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    measurement_path: Path | None

    @property
    def name(self) -> str:
        return f"{self.variant} on {self.profile}" if self.profile != "-" else f"{self.variant} (not made)"


def _child_record(run_dir: Path, summary: RunSummary, row: Row) -> _Child:
    from edgeopt.measure.results import split_row_name
    from edgeopt.measure.stored import load_measurement
    from edgeopt.reports.run_summary import RunLayout

    variant, profile = row.variant, row.profile
    variant_name, runtime = split_row_name(variant)
    params: dict[str, Any] = {"model": summary.model, "model_sha256": summary.model_sha256, "variant": variant,
                              "variant_name": variant_name, "runtime": runtime, "profile": profile,
                              "precision": row.precision, "native": row.expected_fast}
    metrics = _row_metrics(row)
    tags = {"edgeopt.kind": "measurement", "edgeopt.variant": variant, "edgeopt.profile": profile,
            "edgeopt.verdict": row.verdict, "edgeopt.status": row.status}
    if row.failure:
        tags["edgeopt.failure"] = str(row.failure)
    nonfinite = _not_numbers(_row_values(row))
    if nonfinite:
        tags["edgeopt.nonfinite"] = nonfinite
    gate = next((g for g in summary.gates if g.variant == variant and g.profile == profile), None)
    for check in gate.checks if gate is not None else ():
        params[f"budget.{check.metric}"] = check.limit
        tags[f"edgeopt.budget.{check.metric}"] = check.verdict.value
    measurement_path = None
    if profile != "-" and row.status != "emulated":  # an emulated row has outputs, no measurement
        measurement_path = RunLayout(run_dir).measurement(variant, profile)
        measurement = load_measurement(measurement_path)
        params.update(_measurement_params(measurement))
        # the document's own sha256: the history stores a measurement once, whichever run or log brings it
        params["measurement_sha256"] = hashlib.sha256(measurement_path.read_bytes()).hexdigest()
        metrics.update(_measurement_metrics(measurement))
        if measurement.latency is not None:
            tags["edgeopt.stop_reason"] = measurement.latency.stop_reason
    ok = row.status in ("ok", "emulated") and profile != "-"
    return _Child(variant, profile, ok, params, metrics, tags, measurement_path)


# ------------------------------------------------------------------------------------------ what is logged

def _parent_name(summary: RunSummary) -> str:
    model = summary.model
    name = Path(model).name if model.endswith(".onnx") else model
    return f"{name} on {', '.join(summary.profiles) or '-'}"


def _parent_tags(run_dir: Path, summary: RunSummary) -> dict[str, str]:
    digest = hashlib.sha256((run_dir / "summary.json").read_bytes()).hexdigest()
    tags = {"edgeopt.kind": "run", "edgeopt.verdict": summary.verdict,
            "edgeopt.run_dir": str(run_dir.resolve()), "edgeopt.summary_sha256": digest}
    revision = summary.revision or {}
    found = {GIT_COMMIT_TAG: revision.get("commit"), "edgeopt.git_branch": revision.get("branch"),
             "edgeopt.git_dirty": revision.get("dirty"), "edgeopt.created_at": summary.created_at}
    tags.update({key: _text(value, _MAX_TAG_CHARS) for key, value in found.items() if value is not None})
    return tags


def _parent_params(summary: RunSummary) -> dict[str, Any]:
    calibration = summary.calibration or {}
    return {"model": summary.model, "model_path": summary.model_path, "model_sha256": summary.model_sha256,
            "profiles": ",".join(summary.profiles), "variants": ",".join(sorted({r.variant for r in summary.rows})),
            "calibration.name": calibration.get("name"), "calibration.count": calibration.get("count"),
            "calibration.content_hash": calibration.get("content_hash"), "edgeopt_logger": __version__}


def _parent_metrics(summary: RunSummary) -> dict[str, float]:
    metrics: dict[str, Any] = {"exit_code": summary.exit_code}
    for row in summary.rows:
        key = f"verdict_{row.verdict}_count"
        metrics[key] = metrics.get(key, 0) + 1
    return _numbers(metrics)


def _row_metrics(row: Row) -> dict[str, float]:
    """What summary.json adds to a measurement: size, speed-up vs fp32, fidelity, accuracy."""
    return _numbers(_row_values(row))


def _row_values(row: Row) -> dict[str, Any]:
    from edgeopt.evaluate.fidelity import worst

    metrics: dict[str, Any] = {"size_mb": row.size_mb}
    if row.speedup:
        metrics.update(speedup_p50=row.speedup[0], speedup_p50_lower=row.speedup[1],
                       speedup_p50_upper=row.speedup[2])
    for entry in row.fidelity:
        prefix = "fidelity" if len(row.fidelity) == 1 else f"fidelity.{entry.output}"
        for key in ("cosine", "min_cosine", "sqnr_db", "max_abs_error", "top1_agreement", "decision_agreement"):
            metrics[f"{prefix}.{key}"] = getattr(entry, key)
    lowest_cosine = worst(row.fidelity).get("cosine")  # what the history follows: the worst output's or slice's
    if lowest_cosine is not None:
        metrics["fidelity.lowest_cosine"] = lowest_cosine
    accuracy = row.accuracy
    if accuracy:
        metric = accuracy.metric
        metrics.update({f"accuracy_{metric}": accuracy.value, f"accuracy_{metric}_lower": accuracy.lower,
                        f"accuracy_{metric}_upper": accuracy.upper, "accuracy_samples": accuracy.samples})
    return metrics


def _not_numbers(values: dict[str, Any]) -> str:
    """``fidelity.cosine=NaN, fidelity.max_abs_error=Infinity``: the figures that are NaN/Inf, which are not
    logged as metrics (MLflow stores finite numbers best) but named in a tag instead, never dropped unseen."""
    from edgeopt.core.fileio import jsonable

    return ", ".join(f"{key}={jsonable(value)}" for key, value in values.items()
                     if isinstance(value, float) and not math.isfinite(value))


def _measurement_params(m: Measurement) -> dict[str, Any]:
    provenance = m.variant.provenance
    params: dict[str, Any] = {
        "variant.sha256": m.variant.sha256, "variant.recipe": provenance.get("recipe") or provenance.get("kind"),
        "variant.preprocessing": provenance.get("preprocessing"), "profile.digest": m.profile.digest,
        "host_matches": m.host_matches, "proxy": m.proxy, "edgeopt_commit": m.commit, "created_at": m.created_at,
    }
    calibration = provenance.get("calibration") or {}
    if calibration:
        params.update({"calibration.name": calibration.get("name"), "calibration.count": calibration.get("count")})
    params.update({f"session.{k}": v for k, v in m.session.items()})
    params.update({f"bench.{k}": v for k, v in m.bench.items()})
    params.update({f"versions.{k}": v for k, v in m.versions.items()})
    for key in ("hostname", "os", "os_release", "arch", "cpu_model", "logical_cores", "physical_cores",
                "memory_total_gb", "gpus", "device_model", "python_version"):
        params[f"host.{key}"] = m.host.get(key)
    return params


def _measurement_metrics(m: Measurement) -> dict[str, float]:
    metrics: dict[str, Any] = {"load_ms": m.load_ms, "first_inference_ms": m.first_inference_ms}
    if m.latency is not None:
        summary = m.latency.summary()
        metrics.update(samples=summary.n, mean_ms=summary.mean, std_ms=summary.std, cv=summary.cv,
                       min_ms=summary.min, max_ms=summary.max, throughput_per_s=m.latency.throughput_per_s)
        for label, est in summary.percentiles.items():
            metrics.update({f"{label}_ms": est.value, f"{label}_ms_lower": est.lower, f"{label}_ms_upper": est.upper})
    for key in ("peak_rss_mb", "baseline_rss_mb", "model_added_mb"):
        metrics[key] = getattr(m.memory, key) if m.memory else None
    stability = getattr(m, "stability", None)  # present once edgeopt.core.stability records its diagnosis
    if isinstance(stability, dict):
        metrics.update(_flatten("stability", stability))
    return _numbers(metrics)


def _flatten(prefix: str, data: dict[str, Any], depth: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and depth > 1:
            out.update(_flatten(f"{prefix}.{key}", value, depth - 1))
        elif not isinstance(value, (dict, list, tuple)):
            out[f"{prefix}.{key}"] = value
    return out


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """Only finite numbers are metrics (booleans, strings and missing values are left out)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


# ------------------------------------------------------------------------------------------ MLflow

def _import_mlflow() -> Any:
    try:
        import mlflow
        import mlflow.exceptions
    except ImportError as error:
        raise BackendUnavailableError(
            f"MLflow tracking needs mlflow, which is not installed ({error}): pip install edgeopt[tracking]"
        ) from error
    return mlflow


def _client(mlflow: Any, tracking_uri: str) -> MlflowClient:
    try:
        return mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    except (mlflow.exceptions.MlflowException, ImportError) as error:
        hint = ""
        if tracking_uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
            hint = " (database tracking URIs need the full mlflow package: pip install mlflow)"
        elif "MLFLOW_ALLOW_FILE_STORE" in str(error):
            hint = " (MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true is set)"
        raise ConfigError(without_credentials(f"--tracking-uri {tracking_uri}: MLflow cannot use it{hint}: "
                                              f"{first_line(error)}")) from error
    except Exception as error:  # noqa: BLE001 - a store that cannot connect: a database driver's own error...
        raise BackendError(without_credentials(f"MLflow ({tracking_uri}): cannot connect: "
                                               f"{first_line(error)}")) from error


def _experiment(client: MlflowClient, mlflow: Any, name: str, tracking_uri: str) -> str:
    if not name.strip():
        raise ConfigError("--experiment: give a non-empty MLflow experiment name")
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            return str(client.create_experiment(name))
    except mlflow.exceptions.MlflowException as error:
        raise BackendError(without_credentials(f"MLflow ({tracking_uri}): cannot open experiment {name!r}: "
                                               f"{first_line(error)}")) from error
    if found.lifecycle_stage != "active":
        raise ConfigError(f"MLflow experiment {name!r} is deleted; restore it or choose another --experiment")
    return str(found.experiment_id)


def _log(client: MlflowClient, mlflow: Any, run_id: str, params: dict[str, Any], metrics: dict[str, float],
         tags: dict[str, str]) -> None:
    entities = mlflow.entities
    now = int(time.time() * 1000)
    param_list = [entities.Param(_key(k), _text(v, _MAX_PARAM_CHARS)) for k, v in params.items() if v is not None]
    metric_list = [entities.Metric(_key(k), v, now, 0) for k, v in metrics.items()]
    tag_list = [entities.RunTag(_key(k), _text(v, _MAX_TAG_CHARS)) for k, v in tags.items()]
    for i in range(0, len(param_list), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=param_list[i:i + _MAX_PARAMS_PER_BATCH])
    for i in range(0, len(metric_list), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metric_list[i:i + _MAX_METRICS_PER_BATCH])
    for i in range(0, len(tag_list), _MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, tags=tag_list[i:i + _MAX_PARAMS_PER_BATCH])


def _key(name: str) -> str:
    """MLflow keys allow letters, digits, ``_ - . space /``; anything else becomes ``_``."""
    return _BAD_KEY_CHARS.sub("_", name)[:250]


def _text(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _terminate_quietly(client: MlflowClient, run_id: str) -> None:
    try:
        client.set_terminated(run_id, "FAILED")
    except Exception:  # noqa: BLE001 - already reporting the error that matters
        pass

