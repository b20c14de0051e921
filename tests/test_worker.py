"""Tests for the isolated measurement worker (edgeopt.measure.worker via edgeopt.measure.cell), run for real.

Each test starts real ``python -m edgeopt.measure.worker`` processes.  Crashes and hangs are provoked in
the real worker by a ``sitecustomize.py`` placed first on PYTHONPATH, which every child Python
imports at start-up and which acts only when its environment variable is set.
"""

from __future__ import annotations

import functools
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.core.fileio import sha256_file
from edgeopt.core.stats import PERCENTILES, min_samples_for_ci
from edgeopt.measure.cell import Cell, CellContext, measure_cell
from edgeopt.measure.jobs import TimingRule
from edgeopt.measure.launcher import prepare_timing_inputs
from edgeopt.measure.results import Measurement
from edgeopt.measure.worker import timed_loop, warm_up
from edgeopt.models.variants import Variant
from edgeopt.profiles.schema import HardwareProfile, load_profile

pytestmark = pytest.mark.slow

SITECUSTOMIZE = """\
import os

if os.environ.get("EDGEOPT_TEST_SEGFAULT") == "1":
    import ctypes

    ctypes.string_at(0)  # read address 0: SIGSEGV
if os.environ.get("EDGEOPT_TEST_SLEEP") == "1":
    import time

    time.sleep(30)
"""


def write_profile(
    directory: Path,
    name: str,
    *,
    bench: dict[str, Any] | None = None,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> HardwareProfile:
    """Write ``directory/name.yaml`` (a fast any-host profile) and load it by path."""
    settings = {
        "warmup_iterations": 2,
        "min_iterations": 20,
        "max_iterations": 2000,
        "max_seconds": 0.5,
        "worker_timeout_s": 60,
        **(bench or {}),
    }
    bench_lines = "\n".join(f"  {key}: {value}" for key, value in settings.items())
    text = (
        textwrap.dedent(f"""\
        # written by tests/test_worker.py: a fast profile for this host
        name: {name}
        description: fast single-thread CPU profile for worker tests
        identity:
          any_host: true
        runtime:
          backend: onnxruntime
          execution_providers: [{", ".join(providers)}]
          intra_op_threads: 1
          inter_op_threads: 1
        bench:
        """)
        + bench_lines
        + "\n"
    )
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return load_profile(path)


def as_variant(model: Path) -> Variant:
    """Wrap a zoo file as a variant, without running a quantizer."""
    provenance = {
        "kind": "variant",
        "name": model.stem,
        "precision": "fp32",
        "sha256": sha256_file(model),
        "size_bytes": model.stat().st_size,
    }
    return Variant(name=model.stem, path=model, precision="fp32", provenance=provenance)


def measure(model: Path, profile: HardwareProfile, work_dir: Path) -> Measurement:
    inputs = prepare_timing_inputs(model, profile, None, work_dir / "inputs.npz")
    return measure_cell(Cell(as_variant(model), profile, inputs), CellContext(work_dir, force=True))


@pytest.fixture
def fast_profile(tmp_path: Path) -> HardwareProfile:
    return write_profile(tmp_path, "fast-cpu")


@pytest.fixture
def sitecustomize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sitecustomize.py first on the children's PYTHONPATH, inert until an EDGEOPT_TEST_* is set."""
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    monkeypatch.delenv("EDGEOPT_TEST_SEGFAULT", raising=False)
    monkeypatch.delenv("EDGEOPT_TEST_SLEEP", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(directory))
    return directory


@pytest.mark.aarch64
def test_measurement_of_a_tiny_model(conv_model: Path, fast_profile: HardwareProfile, tmp_path: Path) -> None:
    result = measure(conv_model, fast_profile, tmp_path / "work")
    assert result.ok, result.failure
    assert result.failure is None
    assert result.latency is not None
    needed = max(fast_profile.bench.min_iterations, min_samples_for_ci(PERCENTILES["p95"], 0.95))
    assert len(result.latency.samples_ns) >= needed or result.latency.stop_reason == "time_cap"  # max_seconds bounds
    assert all(sample > 0 for sample in result.latency.samples_ns)
    assert result.latency.stop_reason in ("ci_target", "time_cap", "max_iterations")
    assert result.torch_imported is False
    assert result.memory is not None
    assert result.memory.peak_rss_mb >= (result.memory.baseline_rss_mb or 0) > 0
    assert (result.memory.model_added_mb or 0) >= 0
    assert result.providers_active == ["CPUExecutionProvider"]
    assert result.load_ms is not None and result.load_ms > 0
    assert result.first_inference_ms is not None and result.first_inference_ms > 0
    assert result.profile_name == "fast-cpu" and result.variant_name == "tiny_conv"
    assert result.host_matches is True
    saved = tmp_path / "m.json"
    result.save(saved)
    assert Measurement.load(saved) == result
    assert Measurement.load(tmp_path / "work" / "tiny_conv__fast-cpu.json") == result  # saved by measure_cell
    leftovers = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert leftovers == ["inputs.npz", "tiny_conv__fast-cpu.json"], "the worker's job and result files were left behind"


@pytest.mark.aarch64
def test_shipped_host_cpu_profile_drives_the_worker(identity_model: Path, tmp_path: Path) -> None:
    """The shipped profile's settings, with a shorter time cap so the test stays quick."""
    shipped = load_profile("host-cpu")
    bench = shipped.bench.model_dump(mode="json")
    bench.pop("input_shapes")  # None: not expressible as a YAML scalar line, and not needed
    bench.pop("worker_max_rss_mb")  # None too: the default (75 % of the host's memory) applies
    bench.pop("sample_floor")  # None too: no floor
    bench["max_seconds"] = 1.0
    profile = write_profile(
        tmp_path, "host-cpu-quick", bench=bench, providers=tuple(shipped.runtime.execution_providers)
    )
    result = measure(identity_model, profile, tmp_path / "work")
    assert result.ok, result.failure
    assert result.latency is not None
    assert len(result.latency.samples_ns) >= shipped.bench.min_iterations or result.latency.stop_reason == "time_cap"
    assert result.torch_imported is False


@pytest.mark.aarch64
def test_unsupported_operator_is_a_backend_failure(
    custom_op_model: Path, fast_profile: HardwareProfile, tmp_path: Path
) -> None:
    result = measure(custom_op_model, fast_profile, tmp_path)
    assert result.status == "failed" and result.latency is None
    assert result.failure is not None
    assert result.failure.kind == "backend"
    assert "NoSuchOp" in result.failure.message
    assert result.failure.returncode not in (0, None)


@pytest.mark.aarch64
def test_worker_segfault_is_a_crash(
    conv_model: Path,
    fast_profile: HardwareProfile,
    tmp_path: Path,
    sitecustomize: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGEOPT_TEST_SEGFAULT", "1")
    result = measure(conv_model, fast_profile, tmp_path / "work")
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind == "crash"
    assert "SIGSEGV" in result.failure.message
    assert result.failure.returncode == -11


def test_sitecustomize_is_inert_without_its_variable(
    identity_model: Path, fast_profile: HardwareProfile, tmp_path: Path, sitecustomize: Path
) -> None:
    """The crash above comes from the planted file only when asked (measure.py keeps our PYTHONPATH)."""
    assert measure(identity_model, fast_profile, tmp_path / "work").ok


def test_hung_worker_times_out(
    conv_model: Path, tmp_path: Path, sitecustomize: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = write_profile(tmp_path, "timeout-cpu", bench={"worker_timeout_s": 1})
    monkeypatch.setenv("EDGEOPT_TEST_SLEEP", "1")
    started = time.monotonic()
    result = measure(conv_model, profile, tmp_path / "work")
    elapsed = time.monotonic() - started
    assert elapsed < 10
    assert result.status == "failed"
    assert result.failure is not None
    assert result.failure.kind == "timeout"
    assert "worker_timeout_s=1" in result.failure.message


@pytest.mark.aarch64
def test_missing_execution_provider_is_a_provider_fallback_failure(conv_model: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA: no fallback to provoke")
    profile = write_profile(
        tmp_path, "cuda-wanted", providers=("CUDAExecutionProvider", "CPUExecutionProvider")
    )
    result = measure(conv_model, profile, tmp_path / "work")
    assert result.status == "failed" and result.latency is None
    assert result.failure is not None
    assert result.failure.kind == "provider-fallback"
    assert "CUDAExecutionProvider" in result.failure.message


def _rule(**settings: Any) -> TimingRule:
    return TimingRule(**{"stop_percentile": "p95", "confidence": 0.95, "target_ci_rel": 0.02, "min_iterations": 20,
                         "max_iterations": 1000, "max_seconds": 0.3, "warmup_iterations": 20, **settings})


def test_max_seconds_bounds_a_slow_models_timed_loop_and_its_warm_up() -> None:
    """A 50 ms call under min_iterations 20 and max_seconds 0.3: the loop stops at the time cap with the samples it
    has (the p95 CI would want 72), and the warm-up stops there too."""
    slow = functools.partial(time.sleep, 0.05)
    started = time.perf_counter()
    samples, reason = timed_loop(slow, _rule())
    assert reason == "time_cap" and 1 <= len(samples) <= 7, (reason, len(samples))
    assert time.perf_counter() - started < 2.0
    assert 1 <= warm_up(slow, 20, 0.0, 0.3) <= 7


def test_a_sample_floor_outlasts_max_seconds() -> None:
    samples, reason = timed_loop(functools.partial(time.sleep, 0.05), _rule(sample_floor=10))
    assert reason == "time_cap" and len(samples) == 10


def test_a_timeout_says_how_many_reference_inputs_ran_before_timing(
    conv_model: Path, tmp_path: Path, sitecustomize: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = write_profile(tmp_path, "timeout-cpu", bench={"worker_timeout_s": 1})
    monkeypatch.setenv("EDGEOPT_TEST_SLEEP", "1")
    work = tmp_path / "work"
    inputs = prepare_timing_inputs(conv_model, profile, None, work / "inputs.npz")
    with np.load(inputs) as timing:  # the eval set's role: 40 samples the worker runs once each before timing
        reference = {name: np.repeat(timing[name], 40, axis=0) for name in timing.files}
    np.savez(work / "reference.npz", **reference)
    context = CellContext(work, reference_inputs=work / "reference.npz", force=True)
    result = measure_cell(Cell(as_variant(conv_model), profile, inputs), context)
    assert result.failure is not None and result.failure.kind == "timeout"
    assert ("worker exceeded worker_timeout_s=1 on tiny_conv (before timing it runs the 40 reference input(s) once "
            "each: the eval set's samples, when --eval is given; fewer samples or a larger bench.worker_timeout_s)"
            ) == result.failure.message


def test_a_warm_up_time_asked_for_is_kept_beyond_max_seconds() -> None:
    started = time.perf_counter()
    assert warm_up(functools.partial(time.sleep, 0.01), 1, 0.5, 0.1) >= 2
    assert time.perf_counter() - started >= 0.5
