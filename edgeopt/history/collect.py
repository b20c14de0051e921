"""Records from what runs leave on disk: a run folder (``summary.json`` and its measurements), ``profile``'s
measurement files and ``ab``'s JSON document; ``collect`` walks a folder tree for every one of them.

The uid of a record is the sha256 of its document (a run folder's ``summary.json``; a profile run's measurement
files, in name order; an ab document's canonical JSON), so importing a folder twice, or appending a run and
importing its folder later, stores it once.  Each result carries its measurement file's sha256: a later run that
reused a stored measurement (a resumed or repeated run into the same folder) adds no second point for it.  A record
is dated by its earliest measurement: when it measured, not when its summary was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgeopt import __version__
from edgeopt.core.fileio import read_json
from edgeopt.core.stats import summarize
from edgeopt.errors import InputRejectedError
from edgeopt.evaluate.fidelity import worst
from edgeopt.history.fingerprint import fingerprint_of
from edgeopt.history.records import ResultRecord, RunRecord
from edgeopt.measure.results import Measurement, row_name, split_row_name
from edgeopt.measure.stored import load_measurement
from edgeopt.reports.run_summary import RunLayout, load_summary

logger = logging.getLogger(__name__)

RUNTIME_VERSION_KEYS = ("onnxruntime", "openvino", "tensorrt", "torch", "python", "numpy")
# the row verdict of an ab candidate, from the comparison's exit code (its verdict line is the run's)
AB_VERDICTS = {0: "pass", 1: "fail", 5: "inconclusive"}
AS_IS = "as-is"  # the variant of a file measured as it is (profile, ab): no variant was made of it


def model_label(model: str) -> str:
    """The model of a series: a file's name (``det.onnx``: the same on every runner and checkout, wherever the
    file lies), a factory reference as given (``pkg.models:make_detector``)."""
    if ":" in model and not model.endswith(".onnx") and "/" not in model.split(":", 1)[0]:
        return model
    return Path(model).name or model


def record_from_run_folder(path: Path | str, revision: Mapping[str, Any] | None = None) -> RunRecord:
    """The record of the ``edgeopt run`` folder ``path``: one result per measured row (failed ones included, with
    their status), the run's revision (``revision`` when given, else the one its summary recorded)."""
    layout = RunLayout.of(path)
    summary = load_summary(layout.root)
    results: list[ResultRecord] = []
    measured: list[Measurement] = []
    for row in summary.rows:
        if (row.variant, row.profile) not in summary.measured_rows():
            continue
        file = layout.measurement(row.variant, row.profile)
        measurement = load_measurement(file)
        measured.append(measurement)
        results.append(_result(measurement, file, model=model_label(summary.model), model_sha256=summary.model_sha256,
                               status=row.status, verdict=row.verdict, size_mb=row.size_mb,
                               cosine=worst(row.fidelity).get("cosine")))
    report = next((str(p.resolve()) for p in (layout.root / "report.html", layout.summary_md) if p.is_file()), None)
    recorded = min((m.created_at for m in measured), default=None) or summary.created_at \
        or _mtime_iso(layout.summary_json)
    return _run(uid=_sha256(layout.summary_json), kind="run", recorded_at=recorded, source=str(layout.root.resolve()),
                results=results, revision=revision if revision is not None else summary.revision,
                measurement=measured[0] if measured else None, report=report, exit_code=summary.exit_code,
                verdict=summary.verdict)


def record_from_measurements(paths: list[Path], revision: Mapping[str, Any] | None = None,
                             verdicts: Mapping[Path, str] | None = None) -> RunRecord:
    """One record of the measurement files ``paths`` (what one ``edgeopt profile`` wrote): each file measured as it
    is, so its variant is ``as-is``; its verdict is the gate's when ``verdicts`` gives it (else ``n/a``)."""
    if not paths:
        raise InputRejectedError("no measurement files to record")
    paths = sorted(Path(p) for p in paths)
    measurements = [load_measurement(path) for path in paths]
    results = [replace(_result(m, path, model=model_label(m.variant.path or m.variant.name),
                               model_sha256=m.variant.sha256, status="unsupported" if m.unsupported else m.status,
                               verdict=(verdicts or {}).get(path, "n/a"), size_mb=m.variant.size_bytes / 2**20,
                               cosine=None), variant=AS_IS)
               for path, m in zip(paths, measurements, strict=True)]
    digest = hashlib.sha256("".join(r.measurement_sha256 or "" for r in results).encode()).hexdigest()
    return _run(uid=digest, kind="profile", recorded_at=min(m.created_at for m in measurements),
                source=", ".join(str(p.resolve()) for p in paths), results=results, revision=revision,
                measurement=measurements[0], report=str(paths[0].resolve()), exit_code=None, verdict=None)


def record_from_ab(path: Path | str, revision: Mapping[str, Any] | None = None) -> RunRecord:
    """The record of the ``edgeopt ab`` document at ``path`` (:func:`record_from_ab_document`)."""
    path = Path(path)
    return record_from_ab_document(_read(path), str(path.resolve()), revision)


def record_from_ab_document(document: Any, source: str, revision: Mapping[str, Any] | None = None) -> RunRecord:
    """The record of an ``edgeopt ab`` document: the candidate (B) with its p50 and p95 and their order-statistic
    intervals from the stored samples, its verdict the comparison's (pass, fail, inconclusive).  The base (A) is
    left out: it is the other branch's model, and the run's revision is the candidate's.  The uid is the sha256 of
    the document's canonical JSON, whether it comes from the command or its file."""
    if not isinstance(document, dict) or document.get("kind") != "ab":
        raise InputRejectedError(f"{source}: not an edgeopt ab document (kind {_kind(document)!r})")
    try:
        arm, samples = document["candidate"], document["samples_ns"]["candidate"]
        created = document["created_at"]
    except (KeyError, TypeError) as error:
        raise InputRejectedError(f"{source}: an ab document without its {error} (not written by edgeopt ab?)") \
            from error
    try:
        recorded_at = _iso_utc(created)
        summary = summarize([s / 1e6 for s in samples])
        session = arm.get("session") or {}
        _, runtime = split_row_name(row_name(AS_IS, str(session.get("backend", "onnxruntime")),
                                             session.get("precision")))
        p50, p95 = summary.percentiles["p50"], summary.percentiles["p95"]
        host = document.get("host") or {}
        result = ResultRecord(
            model=model_label(str(arm["path"])), profile=str(arm["profile"]), variant=AS_IS, runtime=runtime,
            status="ok", verdict=AB_VERDICTS.get(int(document.get("exit_code", -1)), "n/a"),
            model_sha256=arm.get("sha256"), variant_sha256=arm.get("sha256"), p50_ms=p50.value,
            p50_lower=p50.lower, p50_upper=p50.upper,
            p95_ms=p95.value, p95_lower=p95.lower, p95_upper=p95.upper, samples=summary.n,
            size_mb=float(arm.get("size_bytes", 0)) / 2**20, **_host_fields(host))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputRejectedError(f"{source}: an ab document edgeopt cannot read: {error}") from error
    canonical = json.dumps(document, sort_keys=True, default=str).encode()
    versions = document.get("versions") or {}
    return RunRecord(
        uid=hashlib.sha256(canonical).hexdigest(), kind="ab", recorded_at=recorded_at, source=source,
        results=(result,), **_revision_fields(revision), **_host_fields(host),
        edgeopt_version=str(versions.get("edgeopt", __version__)), versions=_runtime_versions(versions),
        report=source, exit_code=document.get("exit_code"), verdict=str(document.get("verdict")))


def collect(path: Path | str) -> Iterator[RunRecord]:
    """Every record under ``path``: a run folder, a measurement or ab JSON file, or a folder searched for them
    (each run folder once; measurement files inside a run folder belong to its run; other measurement files
    make one record per folder; a JSON file that cannot be read is named in a warning and skipped)."""
    path = Path(path)
    if path.is_file():
        yield _file_record(path)
        return
    if not path.is_dir():
        raise InputRejectedError(f"{path}: no such file or folder")
    if RunLayout.of(path).summary_json.is_file():
        yield record_from_run_folder(path)
        return
    found = False
    for folder, names, files in os.walk(path):
        names.sort()
        here = Path(folder)
        if "summary.json" in files:
            found = True
            yield record_from_run_folder(here)
            names.clear()  # its measurements belong to it
            continue
        loose = sorted(here / name for name in files if name.endswith(".json"))
        kinds = {file: _kind_of_file(file) for file in loose}
        for file in (f for f in loose if kinds[f] == "ab"):
            found = True
            yield record_from_ab(file)
        measurements = [f for f in loose if kinds[f] == "measurement"]
        if measurements:
            found = True
            yield record_from_measurements(measurements)
    if not found:
        raise InputRejectedError(f"{path}: no edgeopt run folder (summary.json), measurement or ab file in it")


# ------------------------------------------------------------------------------------------ helpers


def _file_record(path: Path) -> RunRecord:
    if path.name == "summary.json":
        return record_from_run_folder(path.parent)
    document = _read(path)
    kind = _kind(document)
    if kind == "ab":
        return record_from_ab_document(document, str(path.resolve()))
    if kind == "measurement":
        return record_from_measurements([path])
    raise InputRejectedError(f"{path}: not an edgeopt summary, measurement or ab document (kind {kind!r})")


def _result(m: Measurement, path: Path, *, model: str, model_sha256: str | None, status: str, verdict: str,
            size_mb: float | None, cosine: float | None) -> ResultRecord:
    variant, runtime = split_row_name(m.variant_name)
    figures: dict[str, Any] = {}
    if m.latency is not None:
        percentiles = m.latency.summary_ms.percentiles
        for label in ("p50", "p95"):
            estimate = percentiles[label]
            figures.update({f"{label}_ms": estimate.value, f"{label}_lower": estimate.lower,
                            f"{label}_upper": estimate.upper})
        figures["samples"] = m.latency.summary_ms.n
    return ResultRecord(model=model, profile=m.profile.name, variant=variant, runtime=runtime, status=status,
                        verdict=verdict, model_sha256=model_sha256, variant_sha256=m.variant.sha256,
                        peak_rss_mb=m.memory.peak_rss_mb if m.memory else None, size_mb=size_mb,
                        fidelity_cosine=cosine, host_matches=m.host_matches, proxy=m.proxy,
                        measurement_sha256=_sha256(path), **_host_fields(m.host), **figures)


def _run(*, uid: str, kind: str, recorded_at: str, source: str, results: list[ResultRecord],
         revision: Mapping[str, Any] | None, measurement: Measurement | None, report: str | None,
         exit_code: int | None, verdict: str | None) -> RunRecord:
    host = measurement.host if measurement is not None else {}
    versions = measurement.versions if measurement is not None else {}
    return RunRecord(uid=uid, kind=kind, recorded_at=recorded_at, source=source, results=tuple(results),
                     **_revision_fields(revision), **_host_fields(host),
                     edgeopt_version=str(versions.get("edgeopt", __version__)),
                     versions=_runtime_versions(versions), report=report, exit_code=exit_code, verdict=verdict)


def _host_fields(host: Mapping[str, Any]) -> dict[str, Any]:
    return {"hostname": host.get("hostname"), "host_fingerprint": fingerprint_of(host),
            "cpu_model": host.get("cpu_model")}


def _iso_utc(text: Any) -> str:
    """``text`` as an ISO 8601 UTC time like the measurements' (``2026-12-07T10:00:00+00:00``); a time without a
    zone is UTC.  Raises ValueError for anything else."""
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _revision_fields(revision: Mapping[str, Any] | None) -> dict[str, Any]:
    revision = revision or {}
    dirty = revision.get("dirty")
    return {"commit": revision.get("commit"), "branch": revision.get("branch"),
            "dirty": dirty if isinstance(dirty, bool) else None}


def _runtime_versions(versions: Mapping[str, Any]) -> dict[str, Any]:
    return {key: versions[key] for key in RUNTIME_VERSION_KEYS if versions.get(key) is not None}


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _kind(document: Any) -> Any:
    return document.get("kind") if isinstance(document, dict) else type(document).__name__


def _read(path: Path) -> Any:
    """The JSON document at ``path``; one that cannot be read is ``InputRejectedError`` naming it."""
    try:
        return read_json(path)
    except (OSError, ValueError) as error:
        raise InputRejectedError(f"{path}: not a readable JSON document ({error})") from error


def _kind_of_file(path: Path) -> Any:
    """The ``kind`` of the JSON file ``path``; one that cannot be read is named in a warning and has none."""
    try:
        return _kind(read_json(path))
    except (OSError, ValueError) as error:
        logger.warning(f"skipped {path}: not a readable JSON document ({error})")
        return None

