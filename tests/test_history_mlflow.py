"""MLflow runs read back as history records: a real run folder logged into a real local MLflow file store with
``log_run``, then read with ``records_from_mlflow`` and held against the folder's own record and measurements."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgeopt.errors import BackendError, BackendUnavailableError, ConfigError, InputRejectedError
from edgeopt.history.collect import record_from_run_folder
from edgeopt.history.fingerprint import fingerprint_of
from edgeopt.measure.results import Measurement
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests import zoo
from tests.profiles import write_profile

mlflow = pytest.importorskip("mlflow", reason="extra 'tracking' (mlflow-skinny) is not installed")
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from edgeopt.history import mlflow_import  # noqa: E402
from edgeopt.history.mlflow_import import records_from_mlflow  # noqa: E402
from edgeopt.reports import mlflow_tracking  # noqa: E402
from edgeopt.reports.mlflow_tracking import log_run, without_credentials  # noqa: E402

SECRET = "s3cret-t0ken"  # the password of the credentialed tracking URIs below


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``edgeopt run`` folder: fp32 and int8-dynamic of a tiny conv model on a fast profile."""
    base = tmp_path_factory.mktemp("history-mlflow")
    model = zoo.tiny_conv_model(base / "tiny_conv.onnx")
    write_profile(base, "fast", max_seconds=0.2, worker_timeout_s=60, description="fast history-test profile")
    config = RunConfig(model=str(model), profiles=(str(base / "fast.yaml"),), out_dir=base / "out",
                       variants=("fp32", "int8-dynamic"), reference_samples=4)
    result = run_pipeline(config)
    assert result.exit_code == 0 and len(result.measurements) == 2
    return base / "out"


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local MLflow file store (MLflow 3 asks for MLFLOW_ALLOW_FILE_STORE=true to use one)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


def test_logged_run_reads_back_as_the_record_of_its_folder(run_dir: Path, store: str) -> None:
    tracked = log_run(run_dir, store, "edge")
    [record] = records_from_mlflow(store, "edge")
    summary = json.loads((run_dir / "summary.json").read_text())
    folder = record_from_run_folder(run_dir)

    assert record.uid == hashlib.sha256((run_dir / "summary.json").read_bytes()).hexdigest() == folder.uid
    assert record.kind == "mlflow" and record.source == f"mlflow:{store}#{tracked.parent_run_id}"
    revision = summary["revision"]
    assert revision is not None and revision["commit"]
    assert (record.commit, record.branch, record.dirty) == (revision["commit"], revision["branch"], revision["dirty"])
    measured_at = [Measurement.load(path).created_at for path in sorted((run_dir / "measurements").glob("*.json"))]
    assert record.recorded_at == min(measured_at) == folder.recorded_at  # when it measured: its earliest measurement
    assert record.exit_code == summary["exit_code"] == 0 and record.verdict == summary["verdict"]
    report = "report.html" if (run_dir / "report.html").is_file() else "summary.md"
    artifact_uri = MlflowClient(store).get_run(tracked.parent_run_id).info.artifact_uri
    assert record.report == f"{artifact_uri}/{report}"
    for name in ("commit", "branch", "dirty", "hostname", "host_fingerprint", "cpu_model", "edgeopt_version",
                 "versions", "exit_code", "verdict"):
        assert getattr(record, name) == getattr(folder, name), name
    assert record.host_fingerprint is not None and "onnxruntime" in record.versions

    assert [(r.variant, r.runtime, r.profile) for r in record.results] \
        == [("fp32", "onnxruntime", "fast"), ("int8-dynamic", "onnxruntime", "fast")]
    for result, expected in zip(record.results, folder.results, strict=True):
        for field in dataclasses.fields(result):  # the folder reads the stored summary, MLflow the recomputed one
            value, wanted = getattr(result, field.name), getattr(expected, field.name)
            assert value == (pytest.approx(wanted, rel=1e-9) if isinstance(wanted, float) else wanted), field.name
        measurement = Measurement.load(run_dir / "measurements" / f"{result.variant}__fast.json")
        assert measurement.latency is not None and measurement.memory is not None
        stats = measurement.latency.summary()
        p50, p95 = stats.percentiles["p50"], stats.percentiles["p95"]
        assert (result.p50_ms, result.p50_lower, result.p50_upper) == (p50.value, p50.lower, p50.upper)
        assert (result.p95_ms, result.p95_lower, result.p95_upper) == (p95.value, p95.lower, p95.upper)
        assert result.p50_lower is not None and result.samples == stats.n
        assert result.peak_rss_mb == measurement.memory.peak_rss_mb
        assert result.model == Path(summary["model"]).name
        assert result.model_sha256 == summary["model_sha256"] is not None
        assert result.variant_sha256 == measurement.variant.sha256
        row = next(r for r in summary["rows"] if r["variant"] == result.variant)
        assert (result.status, result.verdict) == (row["status"], row["verdict"]) == ("ok", "pass")
        assert result.fidelity_cosine == pytest.approx(row["fidelity"][0]["cosine"])
        assert result.host_matches is measurement.host_matches and result.proxy is False
        measurement_file = run_dir / "measurements" / f"{result.variant}__fast.json"
        assert result.measurement_sha256 == hashlib.sha256(measurement_file.read_bytes()).hexdigest()
        assert (result.hostname, result.cpu_model) == (measurement.host["hostname"], measurement.host["cpu_model"])
        assert result.host_fingerprint == fingerprint_of(measurement.host) is not None


def test_runtime_is_split_from_the_row_name_and_unmade_variants_have_no_result(run_dir: Path, store: str,
                                                                               tmp_path: Path) -> None:
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    summary = json.loads((copy / "summary.json").read_text())
    for row in summary["rows"]:
        if row["variant"] == "fp32":
            row["variant"] = "fp32@openvino-bf16"
    summary["rows"].append({"variant": "int8-static", "profile": "-", "precision": "-", "status": "failed",
                            "failure": "calibration set too small", "verdict": "error"})
    (copy / "summary.json").write_text(json.dumps(summary))
    (copy / "measurements" / "fp32__fast.json").rename(copy / "measurements" / "fp32@openvino-bf16__fast.json")
    tracked = log_run(copy, store, "edge")
    params = MlflowClient(store).get_run(tracked.child_run_ids[("fp32@openvino-bf16", "fast")]).data.params
    assert (params["variant_name"], params["runtime"]) == ("fp32", "openvino-bf16")

    [record] = records_from_mlflow(store, "edge")
    assert [(r.variant, r.runtime) for r in record.results] \
        == [("fp32", "openvino-bf16"), ("int8-dynamic", "onnxruntime")]


def test_older_logs_and_other_runs(store: str) -> None:
    """A parent logged by an older edgeopt (no runtime, variant_name, created_at, revision tags of its own; a commit
    from MLflow's tags) is read from what it has; runs edgeopt did not log are left alone."""
    client = MlflowClient(store)
    experiment_id = client.create_experiment("old")
    client.create_run(experiment_id, run_name="someone else's training run", tags={"team": "vision"})
    parent = client.create_run(experiment_id, tags={"edgeopt.kind": "run", "edgeopt.verdict": "FAIL: 1 budget",
                                                    "mlflow.source.git.commit": "abc123",
                                                    "mlflow.source.git.branch": "main"})
    parent_id = parent.info.run_id
    client.log_metric(parent_id, "exit_code", 1)
    host = {"cpu_model": "Some CPU", "logical_cores": 8, "physical_cores": 4, "memory_total_gb": 15.6,
            "os": "Linux", "arch": "x86_64"}
    child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "edgeopt.kind": "measurement",
                                                   "edgeopt.status": "ok", "edgeopt.verdict": "fail",
                                                   "edgeopt.nonfinite": "fidelity.logits.cosine=NaN"})
    for key, value in {"model": "m.onnx", "variant": "int8@openvino-bf16", "profile": "fast", "host_matches": "true",
                       "proxy": "false", "host.hostname": "runner-1", "versions.onnxruntime": "1.20.1",
                       "versions.edgeopt": "0.9.0", **{f"host.{k}": json.dumps(v) if not isinstance(v, str) else v
                                                       for k, v in host.items()}}.items():
        client.log_param(child.info.run_id, key, value)
    metrics: dict[str, float] = {"p50_ms": 2.0, "p50_ms_lower": 1.9, "p50_ms_upper": 2.1, "samples": 50,
                                 "fidelity.boxes.cosine": 0.8, "fidelity.boxes.min_cosine": 0.5}
    for key, number in metrics.items():
        client.log_metric(child.info.run_id, key, number)
    client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "edgeopt.kind": "measurement",
                                           "edgeopt.status": "failed", "edgeopt.verdict": "error"})  # no params
    client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id, "note": "added by hand"})

    [record] = records_from_mlflow(store, "old")
    assert record.uid == f"mlflow:{parent_id}" and record.kind == "mlflow"
    start = client.get_run(parent_id).info.start_time
    assert record.recorded_at == datetime.fromtimestamp(start / 1000, timezone.utc).isoformat(timespec="seconds")
    assert (record.commit, record.branch, record.dirty) == ("abc123", "main", None)
    assert (record.exit_code, record.verdict, record.hostname, record.cpu_model) == (1, "FAIL: 1 budget", "runner-1",
                                                                                      "Some CPU")
    assert record.host_fingerprint == fingerprint_of(host) is not None
    assert record.edgeopt_version == "0.9.0" and record.versions == {"onnxruntime": "1.20.1"}
    [result] = record.results
    assert (result.model, result.variant, result.runtime, result.profile) == ("m.onnx", "int8", "openvino-bf16",
                                                                              "fast")
    assert (result.status, result.verdict, result.samples) == ("ok", "fail", 50)
    assert (result.p50_ms, result.p50_lower, result.p50_upper, result.p95_ms) == (2.0, 1.9, 2.1, None)
    assert result.fidelity_cosine is not None and math.isnan(result.fidelity_cosine)  # NaN is the worst output
    assert result.host_matches is True and result.proxy is False and result.model_sha256 is None
    assert result.measurement_sha256 is None  # logged before the measurement_sha256 param
    assert (result.hostname, result.host_fingerprint, result.cpu_model) == ("runner-1", fingerprint_of(host),
                                                                            "Some CPU")


def test_each_row_keeps_its_own_host_and_measurement(run_dir: Path, store: str, tmp_path: Path) -> None:
    """A lab run's rows come from different boards: each result has its measurement's host, the run the first
    row's; the record is dated by its earliest measurement, whichever row that is."""
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    second = copy / "measurements" / "int8-dynamic__fast.json"
    document = json.loads(second.read_text())
    document["host"].update(hostname="board-2", cpu_model="Cortex-A76", arch="aarch64", logical_cores=4)
    document["created_at"] = "2020-01-02T03:04:05+00:00"
    second.write_text(json.dumps(document))
    first = Measurement.load(copy / "measurements" / "fp32__fast.json")

    tracked = log_run(copy, store, "edge")
    params = MlflowClient(store).get_run(tracked.child_run_ids[("int8-dynamic", "fast")]).data.params
    assert params["measurement_sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    [record] = records_from_mlflow(store, "edge")
    folder = record_from_run_folder(copy)

    hosts = [(r.hostname, r.cpu_model, r.host_fingerprint) for r in record.results]
    assert hosts == [(first.host["hostname"], first.host["cpu_model"], fingerprint_of(first.host)),
                     ("board-2", "Cortex-A76", fingerprint_of(document["host"]))]
    assert hosts[0][2] != hosts[1][2]
    assert (record.hostname, record.cpu_model, record.host_fingerprint) == hosts[0]  # the run: its first row's
    assert [r.measurement_sha256 for r in record.results] \
        == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (copy / "measurements" / "fp32__fast.json", second)]
    assert record.recorded_at == "2020-01-02T03:04:05+00:00" == folder.recorded_at
    for name in ("hostname", "cpu_model", "host_fingerprint", "measurement_sha256"):  # the folder import agrees
        assert [getattr(r, name) for r in record.results] == [getattr(r, name) for r in folder.results], name


def test_recorded_at_is_the_earliest_measurement_then_the_parent_then_the_start(store: str) -> None:
    client = MlflowClient(store)
    experiment_id = client.create_experiment("dates")

    def logged(created_at: str | None, children: list[str | None]) -> str:
        tags = {"edgeopt.kind": "run", **({"edgeopt.created_at": created_at} if created_at else {})}
        parent_id: str = client.create_run(experiment_id, tags=tags).info.run_id
        for stamp in children:
            child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent_id,
                                                           "edgeopt.kind": "measurement", "edgeopt.status": "ok"})
            params = {"model": "m.onnx", "variant": "fp32@onnxruntime", "profile": "fast",
                      **({"created_at": stamp} if stamp else {})}
            for key, value in params.items():
                client.log_param(child.info.run_id, key, value)
        return parent_id

    measured = logged("2024-05-03T00:00:00+00:00", ["2024-05-02T10:00:00+00:00", "2024-05-01T09:00:00+00:00"])
    tagged = logged("2024-05-03T00:00:00+00:00", [None])
    started = logged(None, [None])
    dates = {r.source.rsplit("#", 1)[1]: r.recorded_at for r in records_from_mlflow(store, "dates")}
    start = client.get_run(started).info.start_time
    assert dates == {measured: "2024-05-01T09:00:00+00:00", tagged: "2024-05-03T00:00:00+00:00",
                     started: datetime.fromtimestamp(start / 1000, timezone.utc).isoformat(timespec="seconds")}


@pytest.mark.parametrize(("text", "shown"), [
    ("https://user:token@mlflow.example:5000/path?x=1", "https://mlflow.example:5000/path?x=1"),
    ("postgresql://u:pw@db.internal/mlflow", "postgresql://db.internal/mlflow"),
    ("postgresql+psycopg://u:p%40ss@db:5432/mlflow", "postgresql+psycopg://db:5432/mlflow"),
    ("https://token@mlflow.example", "https://mlflow.example"),
    ("https://u:p@ss@mlflow.example/x", "https://mlflow.example/x"),  # a bare @ in the password
    ("API request to https://u:tok@h/api/2.0 failed; retry https://u:tok@h", "API request to https://h/api/2.0 "
                                                                             "failed; retry https://h"),
    ("https://mlflow.example/x@y", "https://mlflow.example/x@y"),  # an @ in the path is no credential
    ("file:///tmp/mlruns", "file:///tmp/mlruns"), ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("databricks", "databricks"), ("/tmp/mlruns", "/tmp/mlruns"),
])
def test_without_credentials(text: str, shown: str) -> None:
    assert without_credentials(text) == shown


def test_credentials_of_the_uri_are_never_stored_nor_shown(run_dir: Path, store: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking URI with a user and password (token): the record's source and every error name the URI
    without them."""
    uri = f"https://ci-bot:{SECRET}@mlflow.example:5000"
    local = functools.partial(MlflowClient, store)  # the credentialed server is this file store

    monkeypatch.setattr(mlflow_tracking, "_client", lambda mlflow, tracking_uri: local())
    tracked = log_run(run_dir, uri, "edge")
    assert tracked.tracking_uri == "https://mlflow.example:5000"  # what log-mlflow prints

    monkeypatch.setattr(mlflow_import, "_client", lambda mlflow, tracking_uri: local())
    [record] = records_from_mlflow(uri, "edge")
    assert record.source == f"mlflow:https://mlflow.example:5000#{tracked.parent_run_id}"
    assert SECRET not in repr(record)
    with pytest.raises(InputRejectedError, match="no experiment named") as missing:
        records_from_mlflow(uri, "nowhere")
    assert "mlflow.example" in str(missing.value) and SECRET not in str(missing.value)

    def refuse(*args: object, **kwargs: object) -> None:
        raise MlflowException(f"API request to {uri}/api/2.0/mlflow/runs/search failed")

    monkeypatch.setattr(MlflowClient, "search_runs", refuse)
    with pytest.raises(BackendError, match="reading experiment 'edge' failed") as failed:
        records_from_mlflow(uri, "edge")
    assert "https://mlflow.example:5000/api/2.0" in str(failed.value) and SECRET not in str(failed.value)


@pytest.mark.parametrize("uri", [f"https://ci-bot:{SECRET}@127.0.0.1:1",  # nothing listens on port 1
                                 f"postgresql://ci-bot:{SECRET}@127.0.0.1:1/mlflow"])
def test_a_server_that_cannot_be_reached_is_named_without_credentials(run_dir: Path, uri: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for call in (lambda: records_from_mlflow(uri, "edge"), lambda: log_run(run_dir, uri, "edge")):
        with pytest.raises((BackendError, ConfigError)) as failed:  # ConfigError: mlflow-skinny has no database
            call()
        message = str(failed.value)
        assert "127.0.0.1:1" in message and SECRET not in message and "ci-bot" not in message, message


def test_runs_are_read_page_by_page_oldest_first(run_dir: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = log_run(run_dir, store, "edge"), log_run(run_dir, store, "edge")
    monkeypatch.setattr(mlflow_import, "PAGE_SIZE", 1)
    records = records_from_mlflow(store, "edge")
    assert [r.source.rsplit("#", 1)[1] for r in records] == [first.parent_run_id, second.parent_run_id]
    assert all(len(r.results) == 2 for r in records) and records[0].uid == records[1].uid


def test_missing_or_deleted_experiment_is_named(store: str) -> None:
    with pytest.raises(InputRejectedError, match="no experiment named 'nowhere'"):
        records_from_mlflow(store, "nowhere")
    client = MlflowClient(store)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(InputRejectedError, match="experiment 'gone' is deleted"):
        records_from_mlflow(store, "gone")


def test_mlflow_failures_are_backend_errors(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    MlflowClient(store).create_experiment("edge")

    def refuse(*args: object, **kwargs: object) -> None:
        raise MlflowException("server said no")

    monkeypatch.setattr(MlflowClient, "search_runs", refuse)
    with pytest.raises(BackendError, match="reading experiment 'edge' failed: server said no"):
        records_from_mlflow(store, "edge")


def test_missing_mlflow_names_the_extra(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` sees when it is not installed
    with pytest.raises(BackendUnavailableError, match=r"pip install edgeopt\[tracking\]"):
        records_from_mlflow(store, "edge")
