"""``edgeopt.evaluate.compare``: thresholds, verdict boundaries, the bootstrap against known truth, and inputs.

The simulations draw latencies from fixed distributions (so the truth is known) and check the
documented false-regression rate and power (docs/regressions.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from edgeopt.core.ratio_stats import bootstrap_ratio, latency_verdict, parse_threshold, parse_thresholds, scalar_verdict
from edgeopt.core.stats import summarize
from edgeopt.errors import ConfigError, InputRejectedError
from edgeopt.evaluate.compare import MeasuredSet, compare_measurements, compare_paths, compare_sets, load_sets
from edgeopt.measure.cell import Cell, CellContext, measure_cell
from edgeopt.measure.launcher import prepare_timing_inputs
from edgeopt.measure.results import Measurement
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import load_profile
from tests import profiles, zoo


def draw(rng: np.random.Generator, n: int, sigma: float = 0.05) -> np.ndarray:
    """Lognormal latencies around 10 ms (cv ~ sigma) with 1 % outliers 1.5-3x slower."""
    x = 10.0 * np.exp(rng.normal(0.0, sigma, n))
    outliers = rng.random(n) < 0.01
    x[outliers] *= rng.uniform(1.5, 3.0, int(outliers.sum()))
    return x


def draw_gamma(rng: np.random.Generator, n: int) -> np.ndarray:
    """Right-skewed latencies: 8 ms + Gamma(4, 0.5) (mean 10 ms, cv 10 %), 1 % outliers."""
    x = 8.0 + rng.gamma(4.0, 0.5, n)
    outliers = rng.random(n) < 0.01
    x[outliers] *= rng.uniform(1.5, 3.0, int(outliers.sum()))
    return x


def verdict_counts(pairs: int, n: int, shift: float, statistic: str = "p95", sampler=draw) -> dict[str, int]:  # noqa: ANN001
    counts: dict[str, int] = {}
    for i in range(pairs):
        rng = np.random.default_rng(20_000 + i)
        base, cand = sampler(rng, n), sampler(rng, n) * shift
        est = bootstrap_ratio(base, cand, statistic, seed=i, resamples=1000)
        verdict = latency_verdict(est.lower, est.upper, 0.05)
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


# ------------------------------------------------------------------------------ simulation, known truth

@pytest.mark.parametrize("statistic", ["p50", "p95", "mean"])
def test_identical_distributions_rarely_regress(statistic: str) -> None:
    counts = verdict_counts(200, 300, 1.0, statistic)
    assert counts.get("regressed", 0) <= 10, counts  # alpha <= 5 % over 200 pairs (nominal 2.5 %)
    assert counts.get("improved", 0) <= 10, counts


def test_true_5pct_p95_shift_is_detected_with_documented_power() -> None:
    counts = verdict_counts(200, 300, 1.05)
    assert counts.get("regressed", 0) >= 180, counts  # documented: >= 90 % at n = 300, cv 5 %


def test_wider_distributions_need_more_samples_for_the_same_power() -> None:
    lognormal = verdict_counts(200, 1000, 1.05, sampler=lambda rng, n: draw(rng, n, sigma=0.1))
    gamma = verdict_counts(200, 1000, 1.05, sampler=draw_gamma)
    null_gamma = verdict_counts(200, 1000, 1.0, sampler=draw_gamma)
    assert lognormal.get("regressed", 0) >= 176, lognormal  # documented: ~94 %, asserted >= 88 %
    assert gamma.get("regressed", 0) >= 170, gamma  # documented: ~92 %, asserted >= 85 %
    assert null_gamma.get("regressed", 0) <= 10, null_gamma


def test_iid_percentile_bootstrap_matches_plain_resampling() -> None:
    """The exact Beta order-statistic shortcut draws what brute-force resampling draws."""
    from edgeopt.core.ratio_stats import _iid_draws

    rng = np.random.default_rng(3)
    x = draw(rng, 200)
    brute = np.sort(x[rng.integers(0, 200, (4000, 200))], axis=1)[:, 189]  # nearest rank ceil(.95*200) = 190
    draws = _iid_draws(x, 0.95, 4000, np.random.default_rng(5))
    assert scipy_stats.ks_2samp(brute, draws).pvalue > 0.001
    assert bootstrap_ratio(x, x, "p95").ratio == 1.0


def test_p_value_is_uniformish_under_the_null_and_small_under_a_shift() -> None:
    nulls = []
    for i in range(100):
        rng = np.random.default_rng(i)
        nulls.append(bootstrap_ratio(draw(rng, 300), draw(rng, 300), "p50", seed=i, resamples=500).p_value)
    assert np.mean(np.asarray(nulls) < 0.05) <= 0.1
    rng = np.random.default_rng(7)
    assert bootstrap_ratio(draw(rng, 300), draw(rng, 300) * 1.1, "p50").p_value < 0.01


# ------------------------------------------------------------------------------ hand-checkable

def test_threshold_parsing() -> None:
    assert parse_threshold("p95:5%").rel == pytest.approx(0.05)
    assert parse_threshold(" p95_ms : 2.5% ").statistic == "p95"
    assert str(parse_threshold("peak_rss_mb:10%")) == "peak_rss_mb:10%"
    assert [t.statistic for t in parse_thresholds(None)] == ["p50", "p95", "peak_rss_mb", "model_size_mb"]
    for bad in ["p95", "p95:5", "p95:-5%", "p95:0%", "p95:100%", "p97:5%", "latency:5%", ":5%", "p95:five%"]:
        with pytest.raises(ConfigError, match="threshold"):
            parse_threshold(bad)
    with pytest.raises(ConfigError, match="more than once"):
        parse_thresholds(["p95:5%", "p95:3%"])
    with pytest.raises(ConfigError):
        parse_thresholds([])


def test_latency_verdict_boundaries() -> None:
    t = 0.05
    assert latency_verdict(1 / 1.05, 1.05, t) == "unchanged"  # the band is closed
    assert latency_verdict(0.99, 1.06, t) == "inconclusive"
    assert latency_verdict(1.001, 1.0501, t) == "regressed"  # significant, not shown within the band
    assert latency_verdict(1.01, 1.04, t) == "unchanged"  # significant but shown smaller than 5 %
    assert latency_verdict(1.0, 1.2, t) == "inconclusive"  # lower end touching 1 is not significant
    assert latency_verdict(1.2, 1.3, t) == "regressed"
    assert latency_verdict(0.7, 0.999, t) == "improved"
    assert latency_verdict(0.96, 0.99, t) == "unchanged"
    assert latency_verdict(0.9, 1.1, t) == "inconclusive"


def test_scalar_comparison() -> None:
    assert scalar_verdict(110 / 100, 0.10) == "unchanged"
    assert scalar_verdict(110.1 / 100, 0.10) == "regressed"
    assert scalar_verdict(90 / 100, 0.10) == "improved"  # 0.9 < 1/1.1
    assert scalar_verdict(91 / 100, 0.10) == "unchanged"
    x = np.full(100, 5.0) * np.linspace(1, 1.01, 100)
    base = MeasuredSet("v", "p", "a", x, peak_rss_mb=100.0, model_size_mb=10.0)
    cand = MeasuredSet("v", "p", "b", x, peak_rss_mb=115.0, model_size_mb=10.05)
    result = compare_sets([base], [cand], ["peak_rss_mb:10%", "model_size_mb:1%", "p50:5%"])
    verdicts = {row.statistic: row.verdict for row in result.rows}
    assert verdicts == {"peak_rss_mb": "regressed", "model_size_mb": "unchanged", "p50": "unchanged"}
    assert result.rows[0].ratio == pytest.approx(1.15)
    assert "1.150x (100 -> 115 MB)" in result.rows[0].sentence
    assert result.exit_code == 1


def test_exit_codes_and_unpaired_warning() -> None:
    rng = np.random.default_rng(0)
    same = draw(rng, 400, 0.02)
    base = [MeasuredSet("v", "p", "a", same), MeasuredSet("w", "p", "a", same)]
    assert compare_sets(base, [MeasuredSet("v", "p", "b", same)], ["p50:5%"]).exit_code == 0
    noisy = MeasuredSet("v", "p", "b", same[::20])  # 20 samples of the same: a wide interval around 1
    result = compare_sets(base, [noisy], ["p95:5%"])
    assert result.exit_code == 5 and result.rows[0].verdict == "inconclusive"
    assert any("w on p is only in the baseline" in w for w in result.warnings)
    with pytest.raises(ConfigError, match="nothing to compare"):
        compare_sets(base, [MeasuredSet("x", "p", "b", same)], ["p50:5%"])


def test_block_bootstrap_needs_blocks_on_both_sides() -> None:
    x = np.linspace(1, 2, 100)
    with pytest.raises(ValueError, match="both sides"):
        bootstrap_ratio(x, x, "p50", baseline_blocks=np.zeros(100))
    with pytest.raises(ConfigError):
        bootstrap_ratio(x, x, "peak_rss_mb")


# ------------------------------------------------------------------------------ real files

@pytest.fixture(scope="module")
def real_measurement(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("measured")
    profile = load_profile(_write_profile(folder))
    variant = Variant.from_file(zoo.tiny_conv_model(folder / "tiny_conv.onnx"))
    inputs = prepare_timing_inputs(variant.path, profile, None, folder / "inputs.npz")
    measurement = measure_cell(Cell(variant, profile, inputs), CellContext(folder / "measurements"))
    assert measurement.ok, measurement.failure
    path = folder / "measurements" / f"{variant.name}__{profile.name}.json"  # saved by measure_cell
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def steady_measurement(real_measurement: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real measurement with its samples replaced by 400 seeded ones within about 1 % of its median (and
    the statistics recomputed): a verdict on it does not depend on how busy the machine was while measuring."""
    document = json.loads(real_measurement.read_text())
    median = float(np.median(document["latency"]["samples_ns"]))
    samples = [int(v) for v in median * np.random.default_rng(0).lognormal(0.0, 0.005, 400)]
    document["latency"]["samples_ns"] = samples
    document["latency"]["summary_ms"] = summarize([v / 1e6 for v in samples], confidence=0.95).to_dict()
    target = tmp_path_factory.mktemp("steady") / "measurements" / real_measurement.name
    target.parent.mkdir()
    target.write_text(json.dumps(document))
    return target


def _write_profile(folder: Path, name: str = "fast") -> Path:
    return profiles.write_profile(folder, name, runtime="", min_iterations=300, max_seconds=0.5, budgets=None,
                                  stability=None, description="fast test profile for any host")


def _edited(source: Path, target: Path, **changes: object) -> Path:
    document = json.loads(source.read_text())
    for dotted, value in changes.items():
        node = document
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document))
    return target


def test_measurement_against_itself_is_unchanged(steady_measurement: Path) -> None:
    measurement = Measurement.load(steady_measurement)
    result = compare_measurements(measurement, measurement, ["p50:5%", "p95:5%", "peak_rss_mb:10%"])
    assert [row.verdict for row in result.rows] == ["unchanged"] * 3
    assert result.exit_code == 0 and not result.warnings
    # a run folder (measurements/) and a single file pair up the same way
    assert compare_paths(steady_measurement.parent.parent, steady_measurement, ["p50:5%"]).exit_code == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "schema2", "foreign", "invalid", "list"])
def test_damaged_baseline_is_a_clear_error_naming_the_file(real_measurement: Path, tmp_path: Path,
                                                          damage: str) -> None:
    bad = tmp_path / "baseline.json"
    text = real_measurement.read_text()
    if damage == "truncated":
        bad.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00\xff not json")
    elif damage == "schema2":
        _edited(real_measurement, bad, schema_version=2)
    elif damage == "foreign":
        bad.write_text(json.dumps({"hello": "world"}))
    elif damage == "invalid":
        _edited(real_measurement, bad, status="maybe")
    else:
        bad.write_text("[1, 2, 3]")
    with pytest.raises(InputRejectedError) as info:
        compare_paths(bad, real_measurement)
    assert str(bad) in str(info.value)
    if damage == "schema2":
        assert "schema_version 2" in str(info.value)
    # inside a folder it is not skipped either
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "good.json").write_text(text)
    (folder / "bad.json").write_bytes(bad.read_bytes())
    with pytest.raises(InputRejectedError, match="bad.json"):
        load_sets(folder)


def test_cross_host_warns_and_refuses_tight_thresholds(steady_measurement: Path, tmp_path: Path) -> None:
    real_measurement = steady_measurement
    other = _edited(real_measurement, tmp_path / "other.json", host__cpu_model="Some Other CPU",
                    host__logical_cores=64, versions__onnxruntime="0.0.1")
    with pytest.raises(ConfigError, match="different hosts.*p95:5%.*--allow-cross-host"):
        compare_paths(real_measurement, other, ["p95:5%"])
    loose = compare_paths(real_measurement, other, ["p95:10%", "peak_rss_mb:5%"])
    assert loose.cross_host
    assert "MEASURED ON DIFFERENT HOSTS" in loose.warnings[0] and "Some Other CPU" in loose.warnings[0]
    assert any("library versions differ: onnxruntime" in w for w in loose.warnings)
    forced = compare_paths(real_measurement, other, ["p95:5%"], allow_cross_host=True)
    assert forced.cross_host and forced.rows[0].verdict == "unchanged"


def test_cli_compare_exit_codes(real_measurement: Path, tmp_path: Path) -> None:
    slower = json.loads(real_measurement.read_text())
    samples = [int(s * 1.3) for s in slower["latency"]["samples_ns"]]
    slower["latency"]["samples_ns"] = samples  # and the statistics with them: a stale summary is refused
    slower["latency"]["summary_ms"] = summarize([s / 1e6 for s in samples], confidence=0.95).to_dict()
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    run = [sys.executable, "-m", "edgeopt", "compare"]
    same = subprocess.run([*run, real_measurement, real_measurement, "--threshold", "p50:5%", "--json",
                           tmp_path / "c.json"], capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stderr
    assert json.loads((tmp_path / "c.json").read_text())["rows"][0]["verdict"] == "unchanged"
    worse = subprocess.run([*run, real_measurement, tmp_path / "slower.json", "--threshold", "p50:5%"],
                           capture_output=True, text=True, timeout=120)
    assert worse.returncode == 1 and "regressed" in worse.stdout, worse.stdout + worse.stderr
    (tmp_path / "cut.json").write_text(real_measurement.read_text()[:100])
    broken = subprocess.run([*run, tmp_path / "cut.json", real_measurement], capture_output=True, text=True,
                            timeout=120)
    assert broken.returncode == 3
    assert broken.stderr.strip().count("\n") == 0 and "cut.json" in broken.stderr
    bad = subprocess.run([*run, real_measurement, real_measurement, "--threshold", "p95"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "threshold" in bad.stderr


# ------------------------------------------------------------------------------ pytest-benchmark

BENCH_TEST = """\
import time

def test_sleepy(benchmark):
    benchmark.pedantic(time.sleep, args=({delay},), rounds=60, iterations=1)
"""


def _pytest_benchmark(folder: Path, delay: float, *extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_bench.py").write_text(BENCH_TEST.format(delay=delay))
    storage = folder / ".benchmarks"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null",
                             "--rootdir", str(folder), str(folder / "test_bench.py"), f"--benchmark-storage={storage}",
                             "--benchmark-save=run", *extra], capture_output=True, text=True, timeout=120,
                            cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return next(storage.rglob("*.json"))


@pytest.mark.slow
def test_pytest_benchmark_files(tmp_path: Path) -> None:
    fast = _pytest_benchmark(tmp_path / "a", 0.001, "--benchmark-save-data")
    # 20x: far beyond what a loaded host does to a sleep (two separate runs; the verdict, not a timing claim)
    slow = _pytest_benchmark(tmp_path / "b", 0.02, "--benchmark-save-data")
    (sets,) = [load_sets(fast)]
    assert sets[0].profile == "pytest-benchmark" and sets[0].variant.endswith("test_sleepy")
    assert sets[0].samples_ms is not None and len(sets[0].samples_ms) == 60
    result = compare_paths(fast, slow, ["p50:10%"])
    assert result.rows[0].verdict == "regressed" and result.exit_code == 1
    no_data = _pytest_benchmark(tmp_path / "c", 0.001)
    with pytest.raises(InputRejectedError, match="--benchmark-save-data"):
        load_sets(no_data)
