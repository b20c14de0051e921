"""The worker's lifecycle, run for real: the real ``edgeopt run`` on a model that never finishes, stopped by SIGTERM,
SIGINT or SIGKILL; the worker's own deadline; SIGTERM to the worker; a parent stuck in a native call; the worker's
memory cap.  Processes are found with psutil, nothing is mocked.

The model (:func:`never_ending_model`) runs an ONNX ``Loop`` of real work (a 64x64 MatMul and a Tanh) whose trip
count is ``(batch - 1) * 2**62``: at batch 1, the shape edgeopt checks a variant with in-process, it ends at
once; at the profile's ``batch_size: 2``, the shape the worker times, it never ends.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests import profiles

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

EDGEOPT = [sys.executable, "-m", "edgeopt"]
WORKER_TIMEOUT_S = 8
WIDTH = 64


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                              producer_name="edgeopt-tests")
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _batch_minus_one() -> list[onnx.NodeProto]:
    """Nodes computing ``extra`` = (first dim of ``input``) - 1, an int64 scalar."""
    return [helper.make_node("Shape", ["input"], ["shape"], name="shape", start=0, end=1),
            helper.make_node("Squeeze", ["shape"], ["batch"], name="batch"),
            helper.make_node("Sub", ["batch", "one"], ["extra"], name="extra")]


def never_ending_model(path: Path, *, ends_at_batch_1: bool = True) -> Path:
    """``input [batch, 64]`` → a Loop of MatMul+Tanh, ``(batch - 1) * 2**62`` times (``batch * 2**62`` unless
    ``ends_at_batch_1``) → ``output [batch, 64]``."""
    state = [helper.make_tensor_value_info("x_in", TensorProto.FLOAT, ["batch", WIDTH])]
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_in", "w"], ["mm"], name="body_matmul"),
         helper.make_node("Tanh", ["mm"], ["x_out"], name="body_tanh"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), *state],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["batch", WIDTH])],
        [numpy_helper.from_array(np.eye(WIDTH, dtype=np.float32) * 0.9, "w")])
    factor = "extra" if ends_at_batch_1 else "batch"
    nodes = [*_batch_minus_one(), helper.make_node("Mul", [factor, "huge"], ["trips"], name="trips"),
             helper.make_node("Loop", ["trips", "true", "input"], ["output"], name="forever", body=body)]
    graph = helper.make_graph(
        nodes, "never_ending", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", WIDTH])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"),
         numpy_helper.from_array(np.array(2**62, np.int64), "huge"),
         numpy_helper.from_array(np.array(True), "true")])
    return _save(graph, path)


def memory_hungry_model(path: Path, megabytes: int) -> Path:
    """``input [batch, 64]`` → ``output``: ``(batch - 1) * megabytes`` MiB of float32 ones (ConstantOfShape)."""
    nodes = [*_batch_minus_one(), helper.make_node("Mul", ["extra", "count"], ["count_total"], name="count_total"),
             helper.make_node("Unsqueeze", ["count_total", "axis"], ["size"], name="size"),
             helper.make_node("ConstantOfShape", ["size"], ["output"], name="fill",
                              value=numpy_helper.from_array(np.ones(1, np.float32)))]
    graph = helper.make_graph(
        nodes, "memory_hungry", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n"])],
        [numpy_helper.from_array(np.array(1, np.int64), "one"),
         numpy_helper.from_array(np.array(megabytes * 2**18, np.int64), "count"),
         numpy_helper.from_array(np.array([0], np.int64), "axis")])
    return _save(graph, path)


def profile_at_batch_2(directory: Path, name: str, extra: str = "", **options: object) -> Path:
    """A fast test profile that times batch 2 (``extra``: more ``bench`` lines)."""
    text = profiles.profile_yaml(name, **options)  # type: ignore[arg-type]
    path = directory / f"{name}.yaml"
    path.write_text(text.replace("bench:\n", f"bench:\n  batch_size: 2\n{extra}", 1))
    return path


def start_run(model: Path, profile: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    # SIGINT at its default, as in a terminal: a test suite started as a background job (``cmd &``) inherits
    # SIGINT ignored, and Python then installs no Ctrl-C handler in the child, so it could not be interrupted
    with open(log, "wb") as sink:  # a file, not a pipe: nobody has to drain it
        return subprocess.Popen([*EDGEOPT, "run", str(model), "--profile", str(profile), "--out", str(out),
                                 "--variant", "fp32"], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def is_worker(process: psutil.Process) -> bool:
    try:
        return "edgeopt.measure.worker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def wait_for_worker(parent: subprocess.Popen[bytes], timeout: float = 60) -> psutil.Process:
    """The worker of ``parent`` once it has spent a second of CPU time: inside the model, not starting up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and parent.poll() is None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(parent.pid).children(recursive=True):
                if is_worker(child) and sum(child.cpu_times()[:2]) > 1.0:
                    return child
        time.sleep(0.1)
    raise AssertionError(f"no busy worker under pid {parent.pid} (exit {parent.poll()})")


def leftovers(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running (a zombie has finished)."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def hidden_files(out: Path) -> list[Path]:
    """Every file in ``out`` whose name, or a folder's on its way, starts with a dot."""
    return sorted(p for p in out.rglob("*") if p.is_file()
                  and any(part.startswith(".") for part in p.relative_to(out).parts))


@pytest.fixture()
def hung_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], psutil.Process, Path, Path]]:
    """``edgeopt run`` of the never-ending model, its worker busy in the model; afterwards, whatever is left of
    either is killed (so a failing test leaves no process behind)."""
    model = never_ending_model(tmp_path / "never_ending.onnx")
    profile = profile_at_batch_2(tmp_path, "hang", worker_timeout_s=WORKER_TIMEOUT_S)
    out, log = tmp_path / "out", tmp_path / "run.log"
    parent = start_run(model, profile, out, log)
    family = [psutil.Process(parent.pid)]
    try:
        worker = wait_for_worker(parent)
        family += psutil.Process(parent.pid).children(recursive=True)
        yield parent, worker, out, log
    finally:
        for process in leftovers(family):
            process.kill()
        parent.wait()


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_stopping_the_parent_leaves_no_process_and_no_hidden_file(
        hung_run: tuple[subprocess.Popen[bytes], psutil.Process, Path, Path], stop: int, code: int) -> None:
    parent, worker, out, log = hung_run
    job = Path(worker.cmdline()[-1])
    family = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children(recursive=True)]
    assert job.is_file() and not job.is_relative_to(out), job  # the job lives in a private scratch folder
    stopped = time.monotonic()
    parent.send_signal(stop)
    assert parent.wait(timeout=WORKER_TIMEOUT_S + 5) == code, log.read_text()
    while leftovers(family) and time.monotonic() - stopped < WORKER_TIMEOUT_S + 5:
        time.sleep(0.05)
    waited = time.monotonic() - stopped
    assert not leftovers(family), f"still running {waited:.1f} s after {signal.Signals(stop).name}: {family}"
    assert waited < 5, f"the worker took {waited:.1f} s to follow its parent"  # not its deadline: at once
    assert not hidden_files(out), hidden_files(out)
    assert not job.parent.exists()
    assert not any(p.suffix == ".json" for p in (out / "measurements").glob("*")), "a measurement was recorded"
    if stop != signal.SIGKILL:
        assert f"edgeopt: {'interrupted' if stop == signal.SIGINT else 'stopped by SIGTERM'}" in log.read_text()


def test_sigterm_stops_a_parent_stuck_in_a_native_call(tmp_path: Path) -> None:
    """The model never ends in the parent's own one-shot check of the variant: no worker yet, and Python's
    handler cannot run; the command still exits 143 after the grace period, and its lock file goes."""
    from edgeopt.cli.main import STOP_GRACE_S

    model = never_ending_model(tmp_path / "never_ending.onnx", ends_at_batch_1=False)
    profile = profiles.write_profile(tmp_path, "batch1", worker_timeout_s=120)  # no bound of the check itself
    out, log = tmp_path / "out", tmp_path / "run.log"
    parent = start_run(model, profile, out, log)
    try:
        deadline = time.monotonic() + 60
        while not any((out / "variants" / ".work").glob(".scratch-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # inside onnxruntime's run
        assert parent.poll() is None and not any(map(is_worker, psutil.Process(parent.pid).children()))
        stopped = time.monotonic()
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=STOP_GRACE_S + 10) == 143, log.read_text()
        assert time.monotonic() - stopped < STOP_GRACE_S + 3
    finally:
        parent.kill()
        parent.wait()
    assert "still not stopped" in log.read_text()
    assert not (out / ".edgeopt.lock").exists()


def test_the_worker_keeps_its_own_deadline_when_the_parent_cannot(
        hung_run: tuple[subprocess.Popen[bytes], psutil.Process, Path, Path]) -> None:
    """A stopped parent (SIGSTOP) enforces nothing: the worker stops itself at its deadline and says so."""
    parent, worker, out, log = hung_run
    parent.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT_S + 5
        while leftovers([worker]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not leftovers([worker]), "the worker ran past its deadline"
    finally:
        parent.send_signal(signal.SIGCONT)
    assert parent.wait(timeout=60) == 4, log.read_text()
    document = json.loads((out / "measurements" / "fp32__hang.json").read_text())
    assert document["failure"]["kind"] == "timeout"
    assert f"worker_timeout_s={WORKER_TIMEOUT_S}" in document["failure"]["message"]
    assert not hidden_files(out), hidden_files(out)


def test_sigterm_to_the_worker_is_a_recorded_crash(
        hung_run: tuple[subprocess.Popen[bytes], psutil.Process, Path, Path]) -> None:
    """SIGTERM reaches the watchdog whichever thread the kernel delivers it to, while the model runs."""
    parent, worker, out, log = hung_run
    worker.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 4, log.read_text()
    failure = json.loads((out / "measurements" / "fp32__hang.json").read_text())["failure"]
    assert failure["kind"] == "crash" and "worker stopped by SIGTERM" in failure["message"], failure
    assert not hidden_files(out), hidden_files(out)


@pytest.mark.parametrize(("megabytes", "says"), [
    (600, "worker peak resident memory"),  # grows past the cap: the watchdog stops it
    (4 * 2**20, "an allocation failed"),  # 4 TiB at once: the allocation itself fails
], ids=["past-the-cap", "allocation-fails"])
def test_a_model_past_the_memory_cap_is_a_memory_failure(tmp_path: Path, megabytes: int, says: str) -> None:
    model = memory_hungry_model(tmp_path / "hungry.onnx", megabytes=megabytes)
    profile = profile_at_batch_2(tmp_path, "capped", extra="  worker_max_rss_mb: 300\n", worker_timeout_s=60)
    out, log = tmp_path / "out", tmp_path / "run.log"
    run = start_run(model, profile, out, log)
    assert run.wait(timeout=120) == 4, log.read_text()
    failure = json.loads((out / "measurements" / "fp32__capped.json").read_text())["failure"]
    assert failure["kind"] == "memory" and says in failure["message"], failure
    assert "memory cap" in failure["message"] and "300 MiB (bench.worker_max_rss_mb)" in failure["message"]
    assert not hidden_files(out), hidden_files(out)
