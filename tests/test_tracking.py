"""MLflow logging of a real run folder into a real local MLflow file store, read back with MlflowClient."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest

from edgeopt.errors import BackendUnavailableError, ConfigError, InputRejectedError
from edgeopt.measure.results import Measurement
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests import zoo
from tests.profiles import write_profile

mlflow = pytest.importorskip("mlflow", reason="extra 'tracking' (mlflow-skinny) is not installed")
from mlflow.entities import Run  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from edgeopt.cli.tracking import add_command  # noqa: E402
from edgeopt.reports.mlflow_tracking import REPORT_ARTIFACTS, log_run  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``edgeopt run`` folder: fp32 and int8-dynamic of a tiny conv model on a fast profile."""
    base = tmp_path_factory.mktemp("tracked")
    model = zoo.tiny_conv_model(base / "tiny_conv.onnx")
    write_profile(base, "fast", max_seconds=0.2, worker_timeout_s=60, description="fast tracking-test profile")
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


def children(client: MlflowClient, experiment_id: str, parent_id: str) -> dict[str, Run]:
    runs = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.data.params.get("variant", run.info.run_name): run for run in runs}


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    return sorted(a.path for a in client.list_artifacts(run_id, path))


def test_run_folder_is_logged_as_parent_with_one_nested_run_per_variant(run_dir: Path, store: str) -> None:
    tracked = log_run(run_dir, store, "edge")
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("edge")
    assert experiment is not None and experiment.experiment_id == tracked.experiment_id
    summary = json.loads((run_dir / "summary.json").read_text())

    parent = client.get_run(tracked.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tiny_conv.onnx on fast"
    assert parent.data.tags["edgeopt.verdict"] == summary["verdict"]
    assert parent.data.params["profiles"] == "fast" and parent.data.params["variants"] == "fp32,int8-dynamic"
    assert parent.data.metrics["exit_code"] == 0 and parent.data.metrics["verdict_pass_count"] == 2
    reports = sorted(name for name in REPORT_ARTIFACTS if (run_dir / name).is_file())
    assert {"summary.json", "summary.md"} <= set(reports) and artifacts(client, parent.info.run_id) == reports

    runs = children(client, tracked.experiment_id, tracked.parent_run_id)
    assert sorted(runs) == ["fp32", "int8-dynamic"]
    assert tracked.child_run_ids == {(v, "fast"): runs[v].info.run_id for v in runs}
    for variant, run in runs.items():
        row = next(r for r in summary["rows"] if r["variant"] == variant)
        measurement = Measurement.load(run_dir / "measurements" / f"{variant}__fast.json")
        assert measurement.latency is not None and measurement.memory is not None
        stats = measurement.latency.summary()
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        assert run.info.status == "FINISHED" and run.info.run_name == f"{variant} on fast"
        assert params["variant"] == variant and params["profile"] == "fast" and params["precision"] == row["precision"]
        assert params["session.intra_op_threads"] == "1" and params["bench.max_seconds"] == "0.2"
        assert params["versions.onnxruntime"] == measurement.versions["onnxruntime"]
        assert params["host.cpu_model"] == measurement.host["cpu_model"]
        assert params["budget.p95_ms"] == "1000.0" and tags["edgeopt.budget.p95_ms"] == "pass"
        assert json.loads(params["variant.recipe"]) == measurement.variant.provenance["recipe"]
        assert tags["edgeopt.verdict"] == "pass" and tags["edgeopt.stop_reason"] == measurement.latency.stop_reason
        for label in ("p50", "p90", "p95", "p99"):
            est = stats.percentiles[label]
            assert metrics[f"{label}_ms"] == est.value
            if est.lower is not None:
                assert metrics[f"{label}_ms_lower"] == est.lower and metrics[f"{label}_ms_upper"] == est.upper
        assert metrics["samples"] == stats.n == len(measurement.latency.samples_ns)
        assert metrics["peak_rss_mb"] == measurement.memory.peak_rss_mb
        assert metrics["size_mb"] == pytest.approx(row["size_mb"])
        assert metrics["fidelity.cosine"] == pytest.approx(row["fidelity"][0]["cosine"])
        assert artifacts(client, run.info.run_id, "measurement") == [f"measurement/{variant}__fast.json"]
    speedup = next(r["speedup"] for r in summary["rows"] if r["variant"] == "int8-dynamic")
    assert [runs["int8-dynamic"].data.metrics[k] for k in ("speedup_p50", "speedup_p50_lower", "speedup_p50_upper")] \
        == pytest.approx(speedup)

    again = log_run(run_dir, store, "edge")  # same experiment, a new parent run
    assert again.experiment_id == tracked.experiment_id and again.parent_run_id != tracked.parent_run_id


def test_reports_and_unmade_variants_are_logged(run_dir: Path, store: str, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    for name in ("junit.xml", "results.csv"):  # only the summaries and an HTML report
        (copy / name).unlink(missing_ok=True)
    (copy / "report.html").write_text("<html><body>report</body></html>")
    summary = json.loads((copy / "summary.json").read_text())
    summary["rows"].append({"variant": "int8-static", "profile": "-", "precision": "-", "status": "failed",
                            "failure": "calibration set too small", "verdict": "error"})
    (copy / "summary.json").write_text(json.dumps(summary))
    tracked = log_run(copy, store, "edge")
    client = MlflowClient(store)
    assert artifacts(client, tracked.parent_run_id) == ["report.html", "summary.json", "summary.md"]
    unmade = client.get_run(tracked.child_run_ids[("int8-static", "-")])
    assert unmade.info.status == "FAILED" and unmade.info.run_name == "int8-static (not made)"
    assert unmade.data.tags["edgeopt.failure"] == "calibration set too small"
    assert unmade.data.tags["mlflow.parentRunId"] == tracked.parent_run_id


def test_unreadable_run_folders_are_input_errors(run_dir: Path, store: str, tmp_path: Path) -> None:
    with pytest.raises(InputRejectedError, match="summary.json: no run summary"):
        log_run(tmp_path, store, "edge")
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    text = (copy / "summary.json").read_text()
    (copy / "summary.json").write_text(text[: len(text) // 2])
    with pytest.raises(InputRejectedError, match="unreadable"):
        log_run(copy, store, "edge")
    (copy / "summary.json").write_text(json.dumps({**json.loads(text), "schema_version": 0}))
    with pytest.raises(InputRejectedError, match="schema_version 1"):
        log_run(copy, store, "edge")
    (copy / "summary.json").write_text(json.dumps({**json.loads(text), "rows": "none"}))
    with pytest.raises(InputRejectedError, match="summary.json: invalid run summary: rows"):
        log_run(copy, store, "edge")
    (copy / "summary.json").write_text(text)
    (copy / "measurements" / "fp32__fast.json").write_text("{")
    with pytest.raises(InputRejectedError, match="fp32__fast.json: unreadable measurement"):
        log_run(copy, store, "edge")


def test_file_store_refused_without_mlflow_opt_in(run_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        log_run(run_dir, (tmp_path / "mlruns").as_uri(), "edge")


def test_missing_mlflow_names_the_extra(run_dir: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` sees when it is not installed
    with pytest.raises(BackendUnavailableError, match=r"pip install edgeopt\[tracking\]"):
        log_run(run_dir, store, "edge")


def test_log_mlflow_subcommand(run_dir: Path, store: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="edgeopt")
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["log-mlflow", str(run_dir), "--tracking-uri", store, "--experiment", "cli"])
    assert args.handler(args) == 0
    assert "2 nested run(s)" in capsys.readouterr().out
    experiment = MlflowClient(store).get_experiment_by_name("cli")
    assert experiment is not None
    with pytest.raises(ConfigError, match="--tracking-uri"):
        args.handler(argparse.Namespace(run_dir=run_dir, tracking_uri=None, experiment="cli"))
