"""Issue 23 (reliability round two), output side: where reports, logs and summaries are written and what they hold.

Each case builds its files under a tmp folder (device nodes are private twins made with ``os.mknod``, never
the machine's ``/dev``), runs the real CLI ``python -m edgeopt`` and asserts the exit code, a phrase of the
message and that nothing is left behind: a device node or symlink target is never replaced, no temporary file
is made beside it, a FIFO never hangs, a full disk names the file, a closed pipe is a quiet 141, CSV cells
cannot run as formulas and JUnit XML stays well-formed whatever the model's file name holds.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import resource
import stat
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeopt.cli import output
from edgeopt.core.fileio import write_text_atomic
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests import zoo
from tests.profiles import profile_yaml

ROOT = Path(__file__).resolve().parents[1]
NAME = '=HYPERLINK("http:evil.example","x")+@SUM(1)\x01\x1b\x0b'  # a formula and control characters
NULL, FULL, ZERO = os.makedev(1, 3), os.makedev(1, 7), os.makedev(1, 5)


def edgeopt(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeopt", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)},
                          preexec_fn=preexec_fn, check=False)


def device(path: Path, number: int) -> Path:
    """A private character device node (a twin of /dev/null, /dev/full or /dev/zero) at ``path``."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, number)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run of a model given by a relative path holding a formula and control characters."""
    base = tmp_path_factory.mktemp("reliability2_outputs")
    zoo.identity_add(base / f"{NAME}.onnx")
    (base / "here.yaml").write_text(profile_yaml("here", identity="  any_host: true", budgets="  p50_ms: 1000",
                                                 description="outputs test"))
    cwd = os.getcwd()
    os.chdir(base)
    try:
        run_pipeline(RunConfig(model=f"{NAME}.onnx", profiles=("here.yaml",), out_dir=base / "out",
                               variants=("fp32",)))
    finally:
        os.chdir(cwd)
    return base / "out"


# ---- 4, 5: CSV formulas, JUnit XML and HTML with control characters


def test_csv_cells_that_a_spreadsheet_would_run_start_with_a_quote(run_dir: Path, tmp_path: Path) -> None:
    for made in (run_dir / "results.csv", tmp_path / "r2.csv"):
        if made.name == "r2.csv":
            assert edgeopt("report", str(run_dir), "--csv", str(made)).returncode == 0
        rows = list(csv.DictReader(io.StringIO(made.read_text())))
        cells = [cell for row in rows for cell in row.values() if cell]
        assert not [c for c in cells if c[0] in "=+@\t\r" or (c[0] == "-" and c != "-" and not _number(c))]
        assert any(cell.startswith("'=HYPERLINK(") for cell in cells)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_junit_is_well_formed_and_html_carries_no_raw_control_character(run_dir: Path) -> None:
    junit = (run_dir / "junit.xml").read_text()
    ET.fromstring(junit)  # raised "not well-formed (invalid token)" before
    assert "\\x1b" in junit and "\x1b" not in junit
    html = (run_dir / "report.html").read_text()
    assert not [c for c in html if ord(c) < 32 and c not in "\t\n\r"]
    assert "\\x1b" in html


# ---- 1: outputs into devices, symlinks and FIFOs


@pytest.mark.parametrize("option", ["--html", "--csv", "--junit"])
def test_a_device_output_is_written_in_place_never_replaced(run_dir: Path, tmp_path: Path, option: str) -> None:
    null = device(tmp_path / "null", NULL)
    done = edgeopt("report", str(run_dir), option, str(null))
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == NULL
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("option", ["--html", "--csv", "--junit"])
def test_a_full_device_is_exit_2_naming_it(run_dir: Path, tmp_path: Path, option: str) -> None:
    full = device(tmp_path / "full", FULL)
    done = edgeopt("report", str(run_dir), option, str(full))
    assert done.returncode == 2
    assert f"edgeopt: error: {full}: No space left on device" in done.stderr
    assert stat.S_ISCHR(full.stat().st_mode) and leftovers(tmp_path) == []


def test_a_stdout_style_symlink_prints_and_stays_a_symlink(run_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")  # what /dev/stdout is, made privately
    done = edgeopt("report", str(run_dir), "--junit", str(link))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('<?xml version="1.0"') and link.is_symlink()
    baseline = run_dir / "measurements" / "fp32__here.json"
    done = edgeopt("compare", str(baseline), str(baseline), "--json", str(link))
    assert '"kind"' in done.stdout and link.is_symlink(), done.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stdout", ["unlinked file", "redirected file"])
def test_a_stdout_style_symlink_reaches_stdout_when_stdout_is_a_file(run_dir: Path, tmp_path: Path,
                                                                    stdout: str) -> None:
    """A CI runner captures stdout into an unlinked file, a shell's ``>`` into a named one: the report goes
    through edgeopt's own descriptor (no ``#inode (deleted)`` file beside it, no rewrite of the redirect target
    from offset 0), and no 'wrote' line lands inside it."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    folder = tmp_path / "captured"
    folder.mkdir()
    command = [sys.executable, "-m", "edgeopt", "report", str(run_dir), "--junit", str(link)]
    if stdout == "unlinked file":
        with tempfile.TemporaryFile(dir=folder) as handle:
            done = subprocess.run(command, stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120)
            handle.seek(0)
            printed = handle.read().decode()
    else:
        with open(folder / "page.xml", "w") as handle:
            handle.write("")
            done = subprocess.run(command, stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120)
        printed = (folder / "page.xml").read_text()
    assert done.returncode == 0, done.stderr
    assert printed.startswith('<?xml version="1.0"') and printed.rstrip().endswith("</testsuites>"), printed[-200:]
    assert "wrote" not in printed and link.is_symlink()
    assert sorted(p.name for p in folder.iterdir()) == ([] if stdout == "unlinked file" else ["page.xml"])
    assert leftovers(tmp_path) == []


def test_a_symlink_is_written_through_to_its_target_with_the_temporary_beside_the_target(
        run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target, link = tmp_path / "real" / "r.csv", tmp_path / "links" / "r.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    done = edgeopt("report", str(run_dir), "--csv", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and target.read_text().startswith("model,")
    assert leftovers(tmp_path / "real") == [] and leftovers(tmp_path / "links") == []


def test_a_fifo_output_nobody_reads_is_refused_at_once(run_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = edgeopt("report", str(run_dir), "--csv", str(fifo))
    assert done.returncode == 2
    assert f"edgeopt: error: {fifo}: a FIFO nobody reads" in done.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_fifo_output_with_a_reader_is_streamed(run_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    while True:  # the reader's open() must come first
        done = edgeopt("report", str(run_dir), "--csv", str(fifo))
        if done.returncode == 0 or "nobody reads" not in done.stderr:
            break
    reader.join(30)
    assert done.returncode == 0, done.stderr
    assert got and got[0].startswith(b"model,") and stat.S_ISFIFO(fifo.stat().st_mode)


# ---- 8: FIFOs and devices where results are read, and the step summary


@pytest.mark.parametrize("command", ["gate", "compare"])
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_results_file_that_is_no_regular_file_is_refused_from_stat(
        run_dir: Path, tmp_path: Path, command: str, kind: str) -> None:
    path = tmp_path / "result.json"
    os.mkfifo(path) if kind == "fifo" else device(path, ZERO)
    other = run_dir / "measurements" / "fp32__here.json"
    done = edgeopt(command, str(path), *([str(other)] if command == "compare" else []))
    assert done.returncode == 3, done.stderr
    assert str(path) in done.stderr and "not a regular file" in done.stderr
    assert "MiB" not in done.stderr  # refused from the inode, nothing read


@pytest.mark.parametrize(("make", "phrase"), [
    (lambda p: os.mkfifo(p), "not a regular file (a FIFO)"),
    (lambda p: device(p, FULL), "not a regular file (a character device)"),
], ids=["fifo", "device"])
def test_a_step_summary_that_is_no_regular_file_is_exit_2_naming_it(
        run_dir: Path, tmp_path: Path, make: Callable[[Path], object], phrase: str) -> None:
    summary = tmp_path / "summary"
    make(summary)
    done = edgeopt("report", str(run_dir), "--github-summary", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 2
    assert f"$GITHUB_STEP_SUMMARY {summary}: cannot append the summary: {phrase}" in done.stderr


def _small_files(kib: int) -> Callable[[], None]:
    """In the child: files may not grow past ``kib`` KiB (EFBIG, as a full disk; Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))


# ---- 12: a full disk names the file


def test_a_full_step_summary_is_exit_2_naming_it(run_dir: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_bytes(b"x" * 4096)
    done = edgeopt("report", str(run_dir), "--github-summary", env={"GITHUB_STEP_SUMMARY": str(summary)},
                   preexec_fn=_small_files(4))
    assert done.returncode == 2
    assert f"$GITHUB_STEP_SUMMARY {summary}: cannot append the summary: File too large" in done.stderr


def test_a_full_log_file_is_exit_2_naming_it_without_logging_tracebacks(run_dir: Path, tmp_path: Path) -> None:
    full = device(tmp_path / "full", FULL)
    model = zoo.identity_add(tmp_path / "m.onnx")
    done = edgeopt("profile", str(model), "--profile", str(run_dir.parent / "here.yaml"), "--out",
                   str(tmp_path / "out"), "--log-file", str(full))
    assert done.returncode == 2
    assert f"edgeopt: error: {full}: No space left on device" in done.stderr
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr


def test_a_log_file_that_fails_raises_naming_it(tmp_path: Path) -> None:
    full = device(tmp_path / "full", FULL)
    with pytest.raises(output.LogFileError) as caught, output.configured(log_file=full):
        logging.getLogger("edgeopt.test").info("a line the device refuses")
    assert caught.value.filename == str(full) and "No space left" in str(caught.value.strerror)


def test_an_atomic_write_that_fails_without_a_file_name_names_its_target(tmp_path: Path) -> None:
    target = tmp_path / "big.txt"
    code = ("import sys; from pathlib import Path; from edgeopt.core.fileio import write_text_atomic\n"
            "try: write_text_atomic(Path(sys.argv[1]), 'x' * 65536)\n"
            "except OSError as e: print(e.filename)")
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60,
                          preexec_fn=_small_files(8), env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.stdout.strip() == str(target), done.stderr
    assert leftovers(tmp_path) == [] and not target.exists()
    write_text_atomic(target, "fits\n")
    assert target.read_text() == "fits\n"


# ---- 13: a reader that goes away; the dashed model name


def test_a_closed_pipe_is_a_quiet_141() -> None:
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, "-m", "edgeopt", "profiles", "list", "--json"], stdout=write_end,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    os.close(write_end)
    os.close(read_end)  # the reader is gone before the first line, as `| head -0` or a finished `head` leaves it
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 141 and stderr == b""


def test_a_model_path_starting_with_a_dash_gets_a_hint() -> None:
    done = edgeopt("run", "-x.onnx", "--profile", "host-cpu")
    assert done.returncode == 2
    assert "write ./-x.onnx or put it after --" in done.stderr


def test_control_characters_in_a_file_name_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    """An escape sequence in a model's file name is shown as ``\\x1b``: the plan line and the error line."""
    model = zoo.tiny_conv_model(tmp_path / "ctl\x01\x1b[31m\x0b.onnx")
    (tmp_path / "fast.yaml").write_text(profile_yaml("fast", max_seconds=0.05))
    done = edgeopt("run", model.name, "--profile", "fast.yaml", "--out", "out", "--variant", "fp32", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plan: model ONNX file ctl\\x01\\x1b[31m\\x0b.onnx;" in done.stderr
    refused = edgeopt("run", model.name, "--profile", "missing\x1b[2J.yaml", cwd=tmp_path)
    assert refused.returncode == 2 and "missing\\x1b[2J.yaml" in refused.stderr
    assert not any(ch in done.stderr + refused.stderr for ch in "\x01\x1b\x0b")
    assert output.terminal_safe("a\tb\nc\x7f") == "a\tb\nc\\x7f"
