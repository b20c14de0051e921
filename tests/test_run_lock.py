"""One writing command per output folder (``edgeopt.core.run_lock``), and output folders that cannot be written.

The lock's holders are real processes: a second ``python`` that takes the lock, a killed one that leaves a stale
lock file, two concurrent ``edgeopt run`` on one folder.  An unwritable output folder is exit 2 naming it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgeopt.core.run_lock import LOCK_NAME, FolderBusyError, held_locks, remove_if_abandoned, run_lock
from edgeopt.errors import ConfigError
from edgeopt.measure.stored import load_measurement
from edgeopt.reports.run_summary import load_summary
from tests import profiles, zoo

EDGEOPT = [sys.executable, "-m", "edgeopt"]
HOLDER = """\
import sys, time
from edgeopt.core.run_lock import run_lock
with run_lock(sys.argv[1], "run"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture()
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of ``tmp_path / 'out'``."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "out")], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.communicate()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_second_holder_is_refused_naming_the_folder_and_the_holder(tmp_path: Path,
                                                                     holder: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    with pytest.raises(FolderBusyError) as refused, run_lock(tmp_path / "out", "tune"):
        pass
    assert time.monotonic() - started < 1
    message = str(refused.value)
    assert str(tmp_path / "out") in message and f"pid {holder.pid}" in message and "edgeopt run" in message
    assert refused.value.exit_code == 2
    assert (tmp_path / "out" / LOCK_NAME).is_file()  # the holder's lock is untouched


def test_the_refusal_advises_what_the_refused_command_can_do(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    """``report`` has no --out: it is told to wait; a run may also choose another folder."""
    with pytest.raises(FolderBusyError, match=r"wait for it to finish$"), run_lock(tmp_path / "out", "report"):
        pass
    with pytest.raises(FolderBusyError, match=r"wait for it to finish or choose another --out$"), \
            run_lock(tmp_path / "out", "run"):
        pass


def test_a_killed_writes_temporary_is_removed_by_the_next_holder(tmp_path: Path) -> None:
    """A SIGKILL between an atomic write's temporary and its rename leaves ``.summary.md.xxxxxxxx.tmp``: the next
    command on the folder removes it, and nothing else."""
    out = tmp_path / "out"
    (out / "measurements").mkdir(parents=True)
    left = [out / ".summary.md.h10zrxoi.tmp", out / "measurements" / ".fp32__fast.json.ab_cd123.tmp"]
    kept = [out / "notes.tmp", out / ".hidden", out / "summary.md", out / ".summary.md.tmp"]
    for path in left + kept:
        path.write_text("x")
    with run_lock(out, "run"):
        pass
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)


def test_a_stale_lock_is_taken_over_with_a_notice(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "out" / LOCK_NAME).is_file()  # a killed holder leaves its file; the OS freed its lock
    notices: list[str] = []
    with run_lock(tmp_path / "out", "run", notice=notices.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert len(notices) == 1 and f"stale lock left by pid {holder.pid}" in notices[0], notices
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_the_lock_is_reentrant_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with run_lock(out, "sweep") as outer:
        with run_lock(out, "run") as inner:
            assert inner == outer and held_locks() == [outer]
            assert json.loads(outer.read_text())["command"] == "sweep"
        assert outer.is_file()
    assert held_locks() == [] and not (tmp_path / "new").exists()  # the folders it made, empty, are gone
    with run_lock(out, "run"):
        (out / "summary.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_a_killed_commands_lock_is_removed_only_by_its_name(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    lock = tmp_path / "out" / LOCK_NAME
    assert not remove_if_abandoned(lock, holder.pid)  # held: left alone
    holder.kill()
    holder.wait()
    assert not remove_if_abandoned(lock, dead_pid())  # another command's: left alone
    assert remove_if_abandoned(lock, holder.pid) and not lock.exists()


def test_an_output_path_under_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create this output folder"), run_lock(tmp_path / "file" / "out",
                                                                                       "run"):
        pass


# ------------------------------------------------------------------------------------------------- the command


def edgeopt(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEOPT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("edgeopt: ")]
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: ") and "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def hidden_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob(".*") if p.is_file())


@pytest.mark.slow
def test_two_runs_on_one_folder_the_second_stops_at_once_and_the_first_is_whole(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    profile = tmp_path / "fast.yaml"  # each measurement runs its full 1.5 s: the first run is still busy later
    text = profiles.profile_yaml("fast", max_seconds=1.5)
    profile.write_text(text.replace("bench:\n", "bench:\n  target_ci_rel: 0.000001\n"))
    out = tmp_path / "out"
    args = ["run", model, "--profile", profile, "--out", out, "--variant", "fp32", "--variant", "fp16",
            "--variant", "int8-dynamic"]
    first = subprocess.Popen([*EDGEOPT, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "measurements").is_dir() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # a second run, and a report that would read the folder half-written
            second, report = pool.map(lambda command: edgeopt(*command), [args, ["report", out]])
        line = one_line_error(second, 2, str(out), f"pid {first.pid}", "edgeopt run")
        assert time.monotonic() - started < 15, line  # the time to start python and import edgeopt
        one_line_error(report, 2, str(out), f"pid {first.pid}")
        stdout, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    summary = load_summary(out)
    rows = {(r.variant, r.profile): r for r in summary.rows}
    files = {p.name for p in (out / "measurements").glob("*.json")}
    assert files == {f"{variant}__{profile}.json" for variant, profile in rows} and len(files) == 3
    for (variant, profile_name), row in rows.items():
        measurement = load_measurement(out / "measurements" / f"{variant}__{profile_name}.json")
        assert measurement.ok and measurement.latency is not None
        assert row.p50_ms["value"] == measurement.latency.summary().percentiles["p50"].value
    assert not hidden_files(out) and not (out / LOCK_NAME).exists()


def run_with_read_only(folder: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``edgeopt ARGS`` while ``folder`` is read-only: mode 0o555 for a user; for root, who ignores permissions,
    a read-only bind mount in a mount namespace of its own (``unshare -m``), else the test is skipped."""
    command = [*EDGEOPT, *map(str, args)]
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=300)
        finally:
            folder.chmod(0o755)
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("root ignores file permissions, and there is no unshare for a read-only mount")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99; shift; exec "$@"'
    done = subprocess.run([unshare, "-m", "sh", "-c", script, "sh", str(folder), *command], capture_output=True,
                          text=True, timeout=300)
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"root ignores file permissions, and cannot mount here: {done.stderr.strip()}")
    return done


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_read_only_output_folder_is_exit_2_naming_it(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    profile = profiles.write_profile(tmp_path, "fast")
    out = tmp_path / "read-only"
    out.mkdir()
    done = run_with_read_only(out, "run", model, "--profile", profile, "--out", out, "--variant", "fp32")
    one_line_error(done, 2, str(out), "cannot write this output folder")
    finished = tmp_path / "finished"
    assert edgeopt("run", model, "--profile", profile, "--out", finished, "--variant", "fp32").returncode == 0
    report = run_with_read_only(out, "report", finished, "--junit", out / "junit.xml")  # a file in it
    one_line_error(report, 2, str(out / "junit.xml"))
    assert list(out.iterdir()) == []
    (finished / "junit.xml").unlink()
    report = run_with_read_only(finished, "report", finished)  # the run folder itself
    one_line_error(report, 2, str(finished), "cannot write this output folder")
    assert not (finished / "junit.xml").exists()


def test_an_output_folder_under_a_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    (tmp_path / "file").write_text("not a folder")
    done = edgeopt("run", model, "--profile", profiles.write_profile(tmp_path, "fast"), "--out",
                   tmp_path / "file" / "out", "--variant", "fp32", timeout=120)
    one_line_error(done, 2, str(tmp_path / "file" / "out"))


def _small_files(kib: int) -> Callable[[], None]:
    """In the child: files may not grow past ``kib`` KiB (EFBIG, as a full disk gives ENOSPC; Python ignores
    SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))


@pytest.mark.slow
@pytest.mark.parametrize(("kib", "named"), [
    (32, "out"),  # tiny_conv's 16 reference inputs take 48 KiB: the command's own write
    (12, "result.json"),  # identity_add's fit; the worker's result (5000 samples) does not: the worker's write
], ids=["command", "worker"])
def test_a_write_the_file_system_refuses_is_exit_2_naming_the_file_and_leaves_no_temporary(
        tmp_path: Path, kib: int, named: str) -> None:
    model = (zoo.tiny_conv_model if kib == 32 else zoo.identity_add)(tmp_path / "model.onnx")
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    # the worker's case times at least 5000 samples (the loop's first stop check), whatever the host's load: its
    # result document is then well past 12 KiB, and the run's own files before it are not
    bench = {} if kib == 32 else {"min_iterations": 5000, "max_seconds": 60}
    done = subprocess.run([*EDGEOPT, "run", str(model), "--profile", str(profiles.write_profile(tmp_path, "fast",
                                                                                                  **bench)),
                           "--out", str(out), "--variant", "fp32"], capture_output=True, text=True, timeout=300,
                          preexec_fn=_small_files(kib),  # and no .pyc: Python would write a truncated one, for all
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(scratch)})
    line = one_line_error(done, 2, "File too large", named)
    assert ".tmp" not in line  # the file meant, not the temporary an atomic write was making
    assert not hidden_files(out) and not (out / LOCK_NAME).exists()
    assert not list(scratch.glob("edgeopt-*"))  # the worker's scratch folder is gone
