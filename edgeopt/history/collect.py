"""Records from what runs leave on disk: a run folder (``summary.json`` and its measurements), ``profile``'s
measurement files and ``ab``'s JSON document; ``collect`` walks a folder tree for every one of them.

The uid of a record is the sha256 of its document (a run folder's ``summary.json``; a measurement or ab file),
so importing a folder twice, or appending a run and importing its folder later, stores it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
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

RUNTIME_VERSION_KEYS = ("onnxruntime", "openvino", "tensorrt", "torch", "python", "numpy")
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
    first: Measurement | None = None
    for row in summary.rows:
        if (row.variant, row.profile) not in summary.measured_rows():
            continue
        measurement = load_measurement(layout.measurement(row.variant, row.profile))
        first = first or measurement
        figures = worst(row.fidelity)
        results.append(_result(measurement, model=model_label(summary.model), model_sha256=summary.model_sha256,
                               status=row.status, verdict=row.verdict, size_mb=row.size_mb,
                               cosine=figures.get("cosine")))
    report = next((str(p.resolve()) for p in (layout.root / "report.html", layout.summary_md) if p.is_file()), None)
    recorded = summary.created_at or (first.created_at if first else _mtime_iso(layout.summary_json))
    return _run(uid=_sha256(layout.summary_json), kind="run", recorded_at=recorded, source=str(layout.root.resolve()),
                results=results, revision=revision if revision is not None else summary.revision,
                measurement=first, report=report, exit_code=summary.exit_code, verdict=summary.verdict)


def record_from_measurements(paths: list[Path], revision: Mapping[str, Any] | None = None,
                             verdicts: Mapping[Path, str] | None = None) -> RunRecord:
    """One record of the measurement files ``paths`` (what one ``edgeopt profile`` wrote): each file measured as it
    is, so its variant is ``as-is``; its verdict is the gate's when ``verdicts`` gives it (else ``n/a``)."""
    if not paths:
        raise InputRejectedError("no measurement files to record")
    measurements = [load_measurement(path) for path in paths]
    results = [replace(_result(m, model=model_label(m.variant.path or m.variant.name), model_sha256=m.variant.sha256,
                               status="unsupported" if m.unsupported else m.status,
                               verdict=(verdicts or {}).get(path, "n/a"), size_mb=m.variant.size_bytes / 2**20,
                               cosine=None), variant=AS_IS)
               for path, m in zip(paths, measurements, strict=True)]
    digest = hashlib.sha256("".join(_sha256(path) for path in paths).encode()).hexdigest()
    return _run(uid=digest, kind="profile", recorded_at=min(m.created_at for m in measurements),
                source=", ".join(str(Path(p).resolve()) for p in paths), results=results, revision=revision,
                measurement=measurements[0], report=str(Path(paths[0]).resolve()), exit_code=None, verdict=None)


def record_from_ab(path: Path | str, revision: Mapping[str, Any] | None = None) -> RunRecord:
    """The record of the ``edgeopt ab`` document at ``path`` (:func:`record_from_ab_document`)."""
    path = Path(path)
    return record_from_ab_document(read_json(path), str(path.resolve()), revision)


def record_from_ab_document(document: Any, source: str, revision: Mapping[str, Any] | None = None) -> RunRecord:
    """The record of an ``edgeopt ab`` document: the candidate (B) with its p50 and p95 and their order-statistic
    intervals from the stored samples, its verdict the comparison's.  The base (A) is left out: it is the other
    branch's model, and the run's revision is the candidate's.  The uid is the sha256 of the document's canonical
    JSON, whether it comes from the command or its file."""
    if not isinstance(document, dict) or document.get("kind") != "ab":
        raise InputRejectedError(f"{source}: not an edgeopt ab document (kind {_kind(document)!r})")
    try:
        arm = document["candidate"]
        summary = summarize([s / 1e6 for s in document["samples_ns"]["candidate"]])
        session = arm.get("session") or {}
        _, runtime = split_row_name(row_name(AS_IS, str(session.get("backend", "onnxruntime")),
                                             session.get("precision")))
        p50, p95 = summary.percentiles["p50"], summary.percentiles["p95"]
        results = [ResultRecord(
            model=model_label(str(arm["path"])), profile=str(arm["profile"]), variant=AS_IS, runtime=runtime,
            status="ok", verdict=str(document.get("verdict", "n/a")), model_sha256=arm.get("sha256"),
            variant_sha256=arm.get("sha256"), p50_ms=p50.value, p50_lower=p50.lower, p50_upper=p50.upper,
            p95_ms=p95.value, p95_lower=p95.lower, p95_upper=p95.upper, samples=summary.n,
            size_mb=float(arm.get("size_bytes", 0)) / 2**20)]
        host = document.get("host") or {}
        canonical = json.dumps(document, sort_keys=True, default=str).encode()
        return RunRecord(
            uid=hashlib.sha256(canonical).hexdigest(), kind="ab", recorded_at=str(document["created_at"]),
            source=source, results=tuple(results), **_revision_fields(revision), hostname=host.get("hostname"),
            host_fingerprint=fingerprint_of(host), cpu_model=host.get("cpu_model"),
            edgeopt_version=str((document.get("versions") or {}).get("edgeopt", __version__)),
            versions=_runtime_versions(document.get("versions") or {}), report=source,
            exit_code=document.get("exit_code"), verdict=str(document.get("verdict")))
    except (KeyError, TypeError, ValueError) as error:
        raise InputRejectedError(f"{source}: an ab document without its {error} (not written by edgeopt ab?)") \
            from error


def collect(path: Path | str) -> Iterator[RunRecord]:
    """Every record under ``path``: a run folder, a measurement or ab JSON file, or a folder searched for them
    (each run folder once; measurement files inside a run folder belong to its run; other measurement files
    make one record per folder)."""
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
        kinds = {file: _kind(_read_quietly(file)) for file in loose}
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
    kind = _kind(read_json(path))
    if kind == "ab":
        return record_from_ab(path)
    if kind == "measurement":
        return record_from_measurements([path])
    raise InputRejectedError(f"{path}: not an edgeopt summary, measurement or ab document (kind {kind!r})")


def _result(m: Measurement, *, model: str, model_sha256: str | None, status: str, verdict: str,
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
                        fidelity_cosine=cosine, host_matches=m.host_matches, proxy=m.proxy, **figures)


def _run(*, uid: str, kind: str, recorded_at: str, source: str, results: list[ResultRecord],
         revision: Mapping[str, Any] | None, measurement: Measurement | None, report: str | None,
         exit_code: int | None, verdict: str | None) -> RunRecord:
    host = measurement.host if measurement is not None else {}
    versions = measurement.versions if measurement is not None else {}
    return RunRecord(uid=uid, kind=kind, recorded_at=recorded_at, source=source, results=tuple(results),
                     **_revision_fields(revision), hostname=host.get("hostname"),
                     host_fingerprint=fingerprint_of(host), cpu_model=host.get("cpu_model"),
                     edgeopt_version=str(versions.get("edgeopt", __version__)),
                     versions=_runtime_versions(versions), report=report, exit_code=exit_code, verdict=verdict)


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
    from datetime import datetime, timezone

    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _kind(document: Any) -> Any:
    return document.get("kind") if isinstance(document, dict) else type(document).__name__


def _read_quietly(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None

