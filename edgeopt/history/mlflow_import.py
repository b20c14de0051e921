"""Read the runs edgeopt logged to MLflow (``edgeopt.reports.mlflow_tracking.log_run``) back as history records.

Each **parent run** of the experiment tagged ``edgeopt.kind=run`` becomes one :class:`RunRecord`, each of its
measured **child runs** (``edgeopt.kind=measurement``, nested with ``mlflow.parentRunId``) one
:class:`ResultRecord`; other runs of the experiment are left alone.  A parent's ``uid`` is its
``edgeopt.summary_sha256`` tag, the sha256 of the run folder's ``summary.json``: the uid the run-folder import gives
that folder, so importing a folder and its MLflow copy stores the run once (a parent without the tag:
``mlflow:<run id>``).  A record is dated when it measured, as the run-folder import dates it: its children's
earliest ``created_at`` (a measurement's), else the parent's ``edgeopt.created_at`` tag, else its MLflow start
time.  Each result keeps its own child's host (``host.*`` params: a lab run's rows come from different boards)
and its measurement document's sha256 (``measurement_sha256``; None in logs older than that param).

What older logs lack is read from what they have: a child without the ``variant_name``/``runtime`` params has its
row name (``variant``) split at ``@``.  A commit set by others (MLflow's ``mlflow.source.git.*`` tags) is taken too.
The tracking URI goes into ``source`` (``mlflow:<uri>#<run id>``) and error messages without its credentials
(``user:password@``).

mlflow (``pip install edgeopt[tracking]``) is imported only when reading; without it
:func:`records_from_mlflow` raises ``BackendUnavailableError``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edgeopt.errors import BackendError, InputRejectedError, first_line
from edgeopt.evaluate.fidelity import lowest
from edgeopt.history.collect import RUNTIME_VERSION_KEYS, model_label
from edgeopt.history.fingerprint import FINGERPRINT_KEYS, fingerprint_of
from edgeopt.history.records import ResultRecord, RunRecord
from edgeopt.measure.results import split_row_name
from edgeopt.reports.mlflow_tracking import GIT_COMMIT_TAG, PARENT_TAG, _client, _import_mlflow, without_credentials

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

__all__ = ["records_from_mlflow"]

PAGE_SIZE = 1000  # runs per search_runs page (MLflow's default page)
_UNMADE_PROFILE = "-"  # the profile of a variant that could not be made (edgeopt.reports.run_summary)
_NOT_MEASURED = ("emulated",)  # row statuses without a measurement: no result of their own
_ROW_PARAMS = frozenset({"model", "variant", "profile"})  # what every child log_run makes has
_REPORTS = ("report.html", "summary.md")  # the run's report, in order of preference


def records_from_mlflow(tracking_uri: str, experiment: str) -> list[RunRecord]:
    """One :class:`RunRecord` per parent run edgeopt logged to the MLflow ``experiment`` at ``tracking_uri``,
    oldest first, its results those of its measured child runs.

    Raises ``InputRejectedError`` for an experiment that does not exist or is deleted, ``ConfigError`` for a
    tracking URI MLflow refuses, ``BackendUnavailableError`` when mlflow is not installed and ``BackendError``
    when MLflow fails while reading.  Neither the records nor the errors hold the URI's credentials.
    """
    mlflow = _import_mlflow()
    client = _client(mlflow, tracking_uri)
    shown = without_credentials(tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise InputRejectedError(f"MLflow ({shown}): no experiment named {experiment!r}")
        if found.lifecycle_stage != "active":
            raise InputRejectedError(f"MLflow ({shown}): experiment {experiment!r} is deleted")
        experiment_id = str(found.experiment_id)
        parents = _search(client, experiment_id, "run")
        children: dict[str, list[Run]] = {}
        for child in _search(client, experiment_id, "measurement"):
            children.setdefault(child.data.tags.get(PARENT_TAG, ""), []).append(child)
        return [_run_record(client, shown, parent, children.get(parent.info.run_id, [])) for parent in parents]
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise BackendError(without_credentials(f"MLflow ({shown}): reading experiment {experiment!r} failed: "
                                               f"{first_line(error)}")) from error


def _search(client: MlflowClient, experiment_id: str, kind: str) -> list[Run]:
    """Every active run of the experiment tagged ``edgeopt.kind=<kind>``, oldest first, page by page."""
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`edgeopt.kind` = '{kind}'",
                                  max_results=PAGE_SIZE, order_by=["attributes.start_time ASC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _run_record(client: MlflowClient, shown_uri: str, parent: Run, children: list[Run]) -> RunRecord:
    """``shown_uri``: the tracking URI without its credentials."""
    run_id = parent.info.run_id
    tags, params, metrics = parent.data.tags, parent.data.params, parent.data.metrics
    # the children in the order they were logged: the summary's rows, as the run-folder import reads them
    measured = [c for c in children if _measured(c)]
    first = measured[0].data.params if measured else {}  # the first measurement: its host and versions
    measured_at = [c.data.params["created_at"] for c in measured if c.data.params.get("created_at")]
    exit_code = metrics.get("exit_code")
    return RunRecord(
        uid=tags.get("edgeopt.summary_sha256") or f"mlflow:{run_id}",
        kind="mlflow",
        # when it measured: its earliest measurement (ISO 8601 UTC stamps order as text), as the folder import
        recorded_at=min(measured_at, default=None) or tags.get("edgeopt.created_at") or _iso(parent.info.start_time),
        source=f"mlflow:{shown_uri}#{run_id}",
        results=tuple(_result_record(child, params.get("model_sha256")) for child in measured),
        commit=tags.get(GIT_COMMIT_TAG),
        branch=tags.get("edgeopt.git_branch") or tags.get("mlflow.source.git.branch"),
        dirty=_flag(tags.get("edgeopt.git_dirty") or tags.get("mlflow.source.git.dirty")),
        **_host(first),
        edgeopt_version=first.get("versions.edgeopt"),
        versions={key: first[f"versions.{key}"] for key in RUNTIME_VERSION_KEYS if f"versions.{key}" in first},
        report=_report(client, parent),
        exit_code=int(exit_code) if exit_code is not None else None,
        verdict=tags.get("edgeopt.verdict"),
    )


def _measured(child: Run) -> bool:
    """A child with a measurement: not a variant that could not be made, nor an accuracy emulation."""
    params = child.data.params
    return (_ROW_PARAMS <= params.keys() and params["profile"] != _UNMADE_PROFILE
            and child.data.tags.get("edgeopt.status") not in _NOT_MEASURED)


def _result_record(child: Run, model_sha256: str | None) -> ResultRecord:
    params, tags = child.data.params, child.data.tags
    figures = {**child.data.metrics, **_nonfinite(tags.get("edgeopt.nonfinite", ""))}
    variant, runtime = split_row_name(params["variant"])
    samples = figures.get("samples")
    return ResultRecord(
        model=model_label(params["model"]),
        profile=params["profile"],
        variant=params.get("variant_name", variant),
        runtime=params.get("runtime", runtime),
        status=tags.get("edgeopt.status", "n/a"),
        verdict=tags.get("edgeopt.verdict", "n/a"),
        model_sha256=params.get("model_sha256", model_sha256),
        variant_sha256=params.get("variant.sha256"),
        p50_ms=figures.get("p50_ms"),
        p50_lower=figures.get("p50_ms_lower"),
        p50_upper=figures.get("p50_ms_upper"),
        p95_ms=figures.get("p95_ms"),
        p95_lower=figures.get("p95_ms_lower"),
        p95_upper=figures.get("p95_ms_upper"),
        samples=int(samples) if samples is not None else None,
        peak_rss_mb=figures.get("peak_rss_mb"),
        size_mb=figures.get("size_mb"),
        fidelity_cosine=_worst_cosine(figures),
        host_matches=_flag(params.get("host_matches")),
        proxy=_flag(params.get("proxy")) is True,
        measurement_sha256=params.get("measurement_sha256"),
        **_host(params),
    )


def _host(params: Mapping[str, str]) -> dict[str, str | None]:
    """A child's host (its ``host.*`` params) as a record holds it: hostname, fingerprint, CPU model."""
    return {"hostname": params.get("host.hostname"),
            "host_fingerprint": fingerprint_of({key: params.get(f"host.{key}") for key in FINGERPRINT_KEYS}),
            "cpu_model": params.get("host.cpu_model")}


def _worst_cosine(figures: Mapping[str, float]) -> float | None:
    """``fidelity.lowest_cosine``: the lowest mean cosine to fp32 across the outputs and their judged slices; in
    older logs, the lowest output's (``fidelity.cosine``, or ``fidelity.<output>.cosine`` with several outputs;
    NaN lowest).  None when no output was compared."""
    if "fidelity.lowest_cosine" in figures:
        return figures["fidelity.lowest_cosine"]
    cosines = [v for k, v in figures.items() if k.startswith("fidelity.") and k.endswith(".cosine")]
    return functools.reduce(lowest, cosines) if cosines else None


def _nonfinite(tag: str) -> dict[str, float]:
    """The figures the ``edgeopt.nonfinite`` tag names (``fidelity.cosine=NaN, fidelity.max_abs_error=Infinity``):
    NaN/Inf values the logger keeps out of the metrics."""
    figures: dict[str, float] = {}
    for entry in filter(None, tag.split(", ")):
        key, _, value = entry.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            continue
        if key and not math.isfinite(number):
            figures[key] = number
    return figures


def _flag(text: str | None) -> bool | None:
    """A logged boolean (``true``/``false``, as JSON writes it; ``True``/``False`` from other loggers)."""
    return {"true": True, "false": False}.get(text.lower()) if text is not None else None


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).isoformat(timespec="seconds")


def _report(client: MlflowClient, parent: Run) -> str | None:
    """The artifact URI of the parent's ``report.html``, else of its ``summary.md``, else None."""
    names = {artifact.path for artifact in client.list_artifacts(parent.info.run_id)}
    name = next((n for n in _REPORTS if n in names), None)
    return f"{parent.info.artifact_uri}/{name}" if name is not None and parent.info.artifact_uri else None
