"""``edgeopt ab`` (interleaved same-host A/B) and ``edgeopt rerun``: block statistics against known
truth, real runs on tiny models built with onnx.helper, and the reproducibility check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgeopt.core.ratio_stats import bootstrap_ratio, latency_verdict
from edgeopt.errors import ConfigError, InputRejectedError
from edgeopt.measure.cell import Cell, CellContext, measure_cell
from edgeopt.measure.launcher import prepare_timing_inputs
from edgeopt.measure.results import Measurement
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import load_profile
from edgeopt.workflows.ab import run_ab
from edgeopt.workflows.rerun import RerunReport, rerun_measurement
from tests import profiles


def write_profile(folder: Path, name: str = "abfast", seconds: float = 2.0) -> Path:
    return profiles.write_profile(folder, name, runtime="", warmup_iterations=20, min_iterations=100,
                                  max_seconds=seconds, budgets=None, stability=None,
                                  description="fast A/B test profile for any host")


def medium_model(path: Path) -> Path:
    """Conv(3->16, 3x3) -> Relu -> Conv(16->16, 3x3) -> GlobalAveragePool -> Flatten; input [1,3,48,48].

    About 0.5 ms a call on one thread: long enough that OS jitter does not own its p95.
    """
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)
             for name, shape in (("w1", (16, 3, 3, 3)), ("w2", (16, 16, 3, 3)))]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["conv1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["conv1"], ["relu_out"], name="relu"),
             helper.make_node("Conv", ["relu_out", "w2"], ["conv2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("GlobalAveragePool", ["conv2"], ["pool_out"], name="pool"),
             helper.make_node("Flatten", ["pool_out"], ["output"], name="flatten")]
    graph = helper.make_graph(nodes, "medium", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                                              [1, 3, 48, 48])],
                              [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def slower_model(source: Path, target: Path, extra: int = 2) -> Path:
    """The same model with a chain of ``extra`` Mul -> Sin pairs after the Relu (same inputs and outputs).

    Each pair is elementwise work on the Relu output; the consumer is the node that read ``relu_out``."""
    model = onnx.load(str(source))
    graph = model.graph
    nodes = list(graph.node)
    chain, previous = [], "relu_out"
    for i in range(extra):
        graph.initializer.append(numpy_helper.from_array(np.array(1.0001 + i * 1e-6, dtype=np.float32), f"k{i}"))
        chain.append(helper.make_node("Mul", [previous, f"k{i}"], [f"mul{i}"], name=f"extra_mul{i}"))
        chain.append(helper.make_node("Sin", [f"mul{i}"], [f"sin{i}"], name=f"extra_sin{i}"))
        previous = f"sin{i}"
    for node in nodes:
        if node.name != "relu":
            node.input[:] = [previous if name == "relu_out" else name for name in node.input]
    at = [n.name for n in nodes].index("relu") + 1
    del graph.node[:]
    graph.node.extend(nodes[:at] + chain + nodes[at:])
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


# ------------------------------------------------------------------------------ block statistics, known truth

def ab_samples(rng: np.random.Generator, pairs: int, block: int, shift: float) -> tuple[np.ndarray, ...]:
    """Simulated ABBA data with machine drift shared by the two blocks of a pair.

    Drift: a random walk (2 % per pair) plus rare level jumps (5 % of pairs, sd 20 %); each block
    adds its own 1 % level; samples are lognormal (cv 5 %) with 1 % outliers 1.5-3x slower.
    """
    walk = np.cumsum(rng.normal(0, 0.02, pairs)) + np.cumsum(np.where(rng.random(pairs) < 0.05,
                                                                      rng.normal(0, 0.2, pairs), 0.0))

    def arm(factor: float) -> np.ndarray:
        level = walk[:, None] + rng.normal(0, 0.01, pairs)[:, None]
        x = 10.0 * factor * np.exp(level + rng.normal(0, 0.05, (pairs, block)))
        outliers = rng.random((pairs, block)) < 0.01
        x[outliers] *= rng.uniform(1.5, 3.0, int(outliers.sum()))
        return x.ravel()

    ids = np.repeat(np.arange(pairs), block)
    return arm(1.0), arm(shift), ids


def ab_verdicts(shift: float, statistic: str = "p95", runs: int = 200) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(runs):
        a, b, ids = ab_samples(np.random.default_rng(40_000 + i), 30, 20, shift)
        est = bootstrap_ratio(a, b, statistic, baseline_blocks=ids, candidate_blocks=ids, seed=i, resamples=500)
        verdict = latency_verdict(est.lower, est.upper, 0.05)
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def test_ab_block_statistics_false_regression_rate() -> None:
    for statistic in ("p50", "p95"):
        counts = ab_verdicts(1.0, statistic)
        assert counts.get("regressed", 0) <= 10, (statistic, counts)  # <= 5 % of 200 under drift


def test_ab_block_statistics_power_for_a_true_5pct_shift() -> None:
    counts = ab_verdicts(1.05, "p95")
    assert counts.get("regressed", 0) >= 180, counts  # documented: >= 90 % at 30 pairs x 20 per arm


def placement_samples(rng: np.random.Generator, shift: float, *, reopened: bool, segments: int = 10,
                      pairs: int = 4, block: int = 20) -> tuple[np.ndarray, ...]:
    """ABBA data where each session has its own placement luck, as measured on this machine.

    A session's placement shifts its level (sd 0.5 %) and stretches its spread (factor exp(N(0, 0.3)),
    about +-3 % at p95).  ``reopened``: a new placement per arm in every segment (what the worker does);
    else one placement per arm for the whole run.  Plus the drift and outliers of :func:`ab_samples`.
    Returns A, B, block-pair ids and segment ids.
    """
    n = segments * pairs
    walk = np.cumsum(rng.normal(0, 0.02, n))[:, None]

    def arm(factor: float) -> np.ndarray:
        draws = segments if reopened else 1
        level = np.resize(rng.normal(0, 0.005, draws), segments)
        spread = np.resize(np.exp(rng.normal(0, 0.3, draws)), segments)
        level, spread = np.repeat(level, pairs)[:, None], np.repeat(spread, pairs)[:, None]
        x = 10.0 * factor * np.exp(walk + level + rng.normal(0, 0.05, (n, block)) * spread)
        outliers = rng.random((n, block)) < 0.01
        x[outliers] *= rng.uniform(1.5, 3.0, int(outliers.sum()))
        return x.ravel()

    return arm(1.0), arm(shift), np.repeat(np.arange(n), block), np.repeat(np.arange(segments), pairs * block)


def placement_verdicts(shift: float, *, reopened: bool, runs: int = 200) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(runs):
        a, b, pair_ids, segment_ids = placement_samples(np.random.default_rng(50_000 + i), shift, reopened=reopened)
        ids = segment_ids if reopened else pair_ids  # the old worker: one session per arm, block-pair bootstrap
        est = bootstrap_ratio(a, b, "p95", baseline_blocks=ids, candidate_blocks=ids, seed=i, resamples=500)
        verdict = latency_verdict(est.lower, est.upper, 0.05)
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def test_reopened_segments_keep_placement_luck_out_of_the_verdict() -> None:
    # one session per arm: its placement is read as a change (documented: 25 regressed, 29 improved of 200)
    old = placement_verdicts(1.0, reopened=False)
    assert old.get("regressed", 0) >= 20 and old.get("improved", 0) >= 20, old
    # sessions re-opened per segment, bootstrap over segments: alpha holds (0 regressed, 3 improved of 200)
    new = placement_verdicts(1.0, reopened=True)
    assert new.get("regressed", 0) <= 10 and new.get("improved", 0) <= 10, new
    # and a true 5 % shift is still found at 10 segments x 4 pairs x 20 calls (documented: 171 of 200)
    power = placement_verdicts(1.05, reopened=True)
    assert power.get("regressed", 0) >= 160, power


def test_block_bootstrap_equals_iid_bootstrap_for_singleton_blocks() -> None:
    rng = np.random.default_rng(1)
    a, b = 10 * np.exp(rng.normal(0, 0.05, 300)), 10.5 * np.exp(rng.normal(0, 0.05, 300))
    iid = bootstrap_ratio(a, b, "p50", resamples=3000)
    blocked = bootstrap_ratio(a, b, "p50", baseline_blocks=np.arange(300), candidate_blocks=np.arange(300, 600),
                              resamples=3000)
    assert blocked.ratio == iid.ratio
    assert blocked.lower == pytest.approx(iid.lower, rel=0.01) and blocked.upper == pytest.approx(iid.upper, rel=0.01)


# ------------------------------------------------------------------------------ real A/B runs

@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ab")
    base = medium_model(folder / "base.onnx")
    return {"base": base, "slow": slower_model(base, folder / "slow.onnx"), "folder": folder,
            "profile": write_profile(folder)}


def test_ab_model_against_itself_is_unchanged(models: dict[str, Path], tmp_path: Path) -> None:
    # p95 of a 0.1 ms call on a shared 2-core machine swings with other processes' preemptions: judge it at 10 %
    result = run_ab(models["base"], models["base"], load_profile(models["profile"]), out_dir=tmp_path,
                    thresholds=["p50:5%", "p95:10%"])
    assert [row.statistic for row in result.rows] == ["p50", "p95"]
    # Under heavy load from other processes the p95 interval may stay wide (inconclusive), but the same
    # model must never come out regressed or improved, and its p50 is unchanged.
    assert result.rows[0].verdict == "unchanged", result.render()
    assert result.rows[1].verdict in ("unchanged", "inconclusive"), result.render()
    assert result.exit_code in (0, 5)
    assert result.path is not None
    document = json.loads(result.path.read_text())
    assert document["kind"] == "ab" and document["order"] == "ABBA" and document["torch_imported"] is False
    n = len(document["samples_ns"]["base"])
    assert n == len(document["blocks"]["base"]) == len(document["samples_ns"]["candidate"]) >= 72
    assert document["host"]["cpu_model"] and document["versions"]["onnxruntime"]
    assert document["base"]["session"]["intra_op_threads"] == 1
    blocks = document["blocks"]["base"]
    assert blocks[: document["block_size"]] == [0] * document["block_size"]
    # sessions are re-opened per segment; the bootstrap resamples segments, each a balanced ABBA run
    segments = [np.asarray(document["segments"][arm]) for arm in ("base", "candidate")]
    assert document["segment_count"] >= 8 and document["reopen_ms"] > 0
    assert np.array_equal(segments[0], segments[1]) and bool((np.diff(segments[0]) >= 0).all())
    assert np.unique(segments[0]).size == document["segment_count"]
    assert document["segment_pairs"] % 2 == 0
    assert not list(tmp_path.glob(".*"))  # nothing half-written left behind


def test_ab_against_a_slower_model_is_regressed(models: dict[str, Path]) -> None:
    result = run_ab(models["base"], models["slow"], load_profile(models["profile"]))
    assert result.path is None
    assert [row.verdict for row in result.rows] == ["regressed", "regressed"], result.render()
    assert all(row.ratio is not None and row.ratio >= 1.2 for row in result.rows)
    assert result.exit_code == 1


def test_ab_cli_same_file_two_settings_and_errors(models: dict[str, Path], tmp_path: Path) -> None:
    other = write_profile(tmp_path, "abother", seconds=1.0)
    run = [sys.executable, "-m", "edgeopt", "ab"]
    done = subprocess.run([*run, models["base"], models["base"], "--profile", models["profile"], "--profile-b",
                           other, "--max-seconds", "1", "--threshold", "p95:10%", "--out", tmp_path / "out"],
                          capture_output=True, text=True, timeout=180)
    # a verdict is reached (its A/A false-alarm rate is measured by benchmarks/ab_self_small.py, not by one
    # 1-second run: at alpha 5 % per statistic a p95 "regressed" shows up now and then on a shared CPU)
    assert done.returncode in (0, 1, 5), done.stdout + done.stderr
    assert "p95 of base-vs-base on abfast-vs-abother" in done.stdout
    assert len(list((tmp_path / "out").glob("ab__*.json"))) == 1
    bad = subprocess.run([*run, models["base"], models["base"], "--profile", models["profile"], "--threshold",
                          "peak_rss_mb:5%"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "latency only" in bad.stderr
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    rejected = subprocess.run([*run, models["base"], empty, "--profile", models["profile"]], capture_output=True,
                              text=True, timeout=60)
    assert rejected.returncode == 3 and "empty.onnx" in rejected.stderr


def test_ab_rejects_scalar_thresholds(models: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="latency only"):
        run_ab(models["base"], models["base"], load_profile(models["profile"]), thresholds=["model_size_mb:1%"])


# ------------------------------------------------------------------------------ rerun

@pytest.fixture()
def stored(models: dict[str, Path], tmp_path: Path) -> Path:
    profile = load_profile(write_profile(tmp_path, "rerunfast", seconds=1.0))
    model = tmp_path / "model.onnx"
    model.write_bytes(models["base"].read_bytes())
    variant = Variant.from_file(model)
    inputs = prepare_timing_inputs(model, profile, None, tmp_path / "inputs.npz")
    measurement = measure_cell(Cell(variant, profile, inputs), CellContext(tmp_path / "m"))
    assert measurement.ok
    path = tmp_path / "m" / "model__rerunfast.json"  # saved by measure_cell
    assert path.is_file()
    return path


def test_rerun_sets_each_fresh_measurement_against_the_stored_samples(stored: Path, tmp_path: Path) -> None:
    """The rerun flow for real: every rerun is measured and compared with the stored samples, fresh over stored.

    No claim on how close the two are: they are separate measurements, and a re-measurement on a shared machine
    moves with the other processes' load (a fresh-clone CI run at ~2 per core saw a p95 ratio of 0.126).  The
    verdict is judged on recorded samples below; reproducibility figures belong in ``benchmarks/``."""
    out = tmp_path / "reruns"
    report = rerun_measurement(stored, times=2, out_dir=out)
    assert [row["rerun"] for row in report.rows] == [1, 2] and not report.failures
    stored_latency = Measurement.load(stored).latency
    assert stored_latency is not None
    for row in report.rows:
        fresh = Measurement.load(out / f"{stored.stem}__rerun{row['rerun']}.json").latency
        assert fresh is not None and row["n"] == len(fresh.samples_ns)
        for statistic in ("p50", "p95"):
            s = row["statistics"][statistic]
            point = bootstrap_ratio([v / 1e6 for v in stored_latency.samples_ns],
                                    [v / 1e6 for v in fresh.samples_ns], statistic, resamples=10)
            assert (s["stored_ms"], s["rerun_ms"]) == (point.baseline, point.candidate)
            assert s["ratio"] == pytest.approx(point.ratio) and s["lower"] <= s["ratio"] <= s["upper"]
    agreeing = sum(all(abs(s["ratio"] - 1) <= 0.02 for s in row["statistics"].values()) for row in report.rows)
    assert report.agreed == agreeing and report.exit_code == (0 if agreeing == 2 else 5)
    assert report.render().endswith(f"rerun: {agreeing}/2 rerun(s) agree within +-2% on p50 and p95 "
                                    f"(exit {report.exit_code})")


def steady_row(stored_ms: np.ndarray, factor: float, rerun: int) -> dict[str, Any]:
    """A rerun row as ``rerun_measurement`` builds it, for a rerun whose samples are ``stored_ms * factor``."""
    stats = {}
    for statistic in ("p50", "p95"):
        est = bootstrap_ratio(stored_ms, stored_ms * factor, statistic, seed=rerun - 1)
        stats[statistic] = {"ratio": est.ratio, "lower": est.lower, "upper": est.upper, "stored_ms": est.baseline,
                            "rerun_ms": est.candidate}
    return {"rerun": rerun, "n": stored_ms.size, "statistics": stats}


def test_rerun_verdict_on_steady_recorded_samples() -> None:
    """Agreement and exit code judged on recorded steady samples (seeded, within about 1 % of 0.5 ms), where
    the truth is known: a rerun at the stored level or 1 % off agrees, one 5 % slower does not."""
    stored_ms = 0.5 * np.random.default_rng(0).lognormal(0.0, 0.005, 400)
    same, near, slower = (steady_row(stored_ms, factor, i + 1) for i, factor in enumerate((1.0, 1.01, 1.05)))
    reproduced = RerunReport(Path("m.json"), (same, near))
    assert reproduced.agreed == 2 and reproduced.exit_code == 0
    assert reproduced.render() == "rerun: 2/2 rerun(s) agree within +-2% on p50 and p95 (exit 0)"
    drifted = RerunReport(Path("m.json"), (same, slower))
    assert slower["statistics"]["p50"]["ratio"] == pytest.approx(1.05)
    assert drifted.agreed == 1 and drifted.exit_code == 5
    assert drifted.render() == "rerun: 1/2 rerun(s) agree within +-2% on p50 and p95 (exit 5)"
    failed = RerunReport(Path("m.json"), (same,), failures=("rerun 2: worker crashed",))
    assert failed.exit_code == 4 and failed.render().splitlines()[0] == "FAILED: rerun 2: worker crashed"


def test_rerun_refuses_a_changed_or_missing_model(stored: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\x00")
    with pytest.raises(InputRejectedError, match="sha256"):
        rerun_measurement(stored)
    model.unlink()
    with pytest.raises(InputRejectedError, match="no longer exists"):
        rerun_measurement(stored)
    old = tmp_path / "old.json"
    document = json.loads(stored.read_text())
    document["schema_version"] = 2
    old.write_text(json.dumps(document))
    with pytest.raises(InputRejectedError, match="old.json.*schema_version 2"):
        rerun_measurement(old)
