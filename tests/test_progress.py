"""Progress and logging of the real ``edgeopt run`` (issue 13 items 1 and 2): bars with a live sample count on a
terminal, one line per step elsewhere, ``--quiet``, ``-v``, ``--log-file``, and pure JSON with ``--json``.

Each test runs the command in a subprocess on a tiny model with a short profile whose CI target cannot be met, so
the timed loop reaches several checkpoints (and the worker reports its progress) before the time cap.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeopt.cli import output
from edgeopt.core import progress
from edgeopt.core.logs import warnings_to_file
from tests import zoo
from tests.profiles import profile_yaml

EDGEOPT = [sys.executable, "-m", "edgeopt"]
VERDICT = re.compile(r"^verdict: ")


def slow_ci_profile(directory: Path, seconds: float = 1.0) -> Path:
    """A profile whose CI target is out of reach: the loop runs to ``seconds`` through many checkpoints."""
    text = profile_yaml("progress", max_seconds=seconds).replace(
        f"  max_seconds: {seconds}\n", f"  max_seconds: {seconds}\n  target_ci_rel: 0.00001\n")
    path = directory / "progress.yaml"
    path.write_text(text)
    return path


@pytest.fixture()
def run_args(tmp_path: Path) -> list[str]:
    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    return ["run", str(model), "--profile", str(slow_ci_profile(tmp_path)), "--variant", "fp32",
            "--out", str(tmp_path / "out")]


def edgeopt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEOPT, *args], capture_output=True, text=True, timeout=300)


def under_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run edgeopt with stderr on a pseudo-terminal (stdout a pipe); returns exit code, stdout, terminal text."""
    main, child = pty.openpty()
    process = subprocess.Popen([*EDGEOPT, *args], stdout=subprocess.PIPE, stderr=child, stdin=subprocess.DEVNULL)
    os.close(child)
    seen = bytearray()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=60), stdout, seen.decode(errors="replace")


def test_a_terminal_sees_progress_redraws_with_a_live_sample_count(run_args: list[str]) -> None:
    code, stdout, terminal = under_a_terminal(*run_args)
    assert code == 0, terminal
    assert re.search(r"\r(?!\n)", terminal), terminal  # a redraw (a terminal turns each newline into \r\n)
    counts = re.findall(r"measure fp32__progress: (\d+) samples", terminal)
    assert counts and int(counts[-1]) > 0, terminal  # the worker's count, live
    assert re.search(r"CI [±+/-]+\d", terminal), terminal
    assert "measure fp32__progress: p50" in terminal  # the step's log line is written above the bars
    assert any(VERDICT.match(line) for line in stdout.splitlines()), stdout


def test_without_a_terminal_one_line_per_step_and_no_redraws(run_args: list[str]) -> None:
    result = edgeopt(*run_args)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "samples [" not in result.stderr
    lines = result.stderr.splitlines()
    assert "measure fp32__progress: running ..." in lines
    assert any(line.startswith("measure fp32__progress: p50 ") for line in lines), lines
    assert any(line.startswith("variant fp32: ") for line in lines), lines


def test_quiet_prints_only_the_verdict(run_args: list[str]) -> None:
    result = edgeopt(*run_args, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and VERDICT.match(lines[0]), result.stdout
    code, stdout, terminal = under_a_terminal("-q", *run_args)  # before the subcommand, on a terminal: no bars
    assert code == 0 and terminal == "" and len(stdout.splitlines()) == 1, (stdout, terminal)


def test_json_stdout_is_pure_json_and_log_file_gets_every_line(run_args: list[str], tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "edgeopt.log"
    code, stdout, terminal = under_a_terminal(*run_args, "--json", "--log-file", str(log_file))
    assert code == 0, terminal
    assert json.loads(stdout)["kind"] == "run"
    assert not re.search(r"\r(?!\n)", terminal)  # no bars with --json; the step lines still go to stderr
    assert "measure fp32__progress: running ..." in terminal
    text = log_file.read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO edgeopt\.measure\.cell: measure fp32__progress: "
                     r"running \.\.\.$", text, re.MULTILINE), text
    assert " DEBUG " in text or "INFO edgeopt.workflows.run_inputs: variant fp32" in text


@pytest.mark.parametrize("verbose", [0, 1])
def test_runtime_warnings_go_to_run_log_counted_and_to_stderr_only_with_verbose(tmp_path: Path,
                                                                                verbose: int) -> None:
    console, run_log = io.StringIO(), tmp_path / "run.log"
    with output.configured(verbose=verbose, stream=console), warnings_to_file(run_log) as warned:
        logging.getLogger("edgeopt.workflows.run_inputs").info("variant fp32: 0.04 MB")
        logging.getLogger("edgeopt.measure.cell").warning("measure fp32__fast: FAILED: crash")
        logging.warning("Please consider to run pre-processing before quantization.")  # what ORT's quantizer calls
        logging.getLogger("onnxruntime.quantization.shape_inference").info("Performing symbolic shape inference...")
        count = warned()
    assert count == 1  # the quantizer's warning; edgeopt's own warning is no runtime warning
    kept = run_log.read_text()
    for needle in ("INFO edgeopt.workflows.run_inputs: variant fp32", "WARNING root: Please consider",
                   "INFO onnxruntime.quantization.shape_inference: Performing"):
        assert needle in kept, kept
    shown = console.getvalue().splitlines()
    assert shown[:2] == ["variant fp32: 0.04 MB", "measure fp32__fast: FAILED: crash"]
    quantizer = "WARNING root: Please consider to run pre-processing before quantization."
    assert shown[2:] == ([quantizer] if verbose else [])
    assert not logging.getLogger().handlers or all(not isinstance(h, logging.StreamHandler) or
                                                   type(h).__module__.startswith("_pytest")
                                                   for h in logging.getLogger().handlers)  # all undone


def test_the_worker_reports_its_checkpoints_to_the_launcher(tmp_path: Path) -> None:
    from edgeopt.measure.cell import Cell, CellContext, measure_cell
    from edgeopt.measure.launcher import prepare_timing_inputs
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import load_profile

    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    profile = load_profile(str(slow_ci_profile(tmp_path, seconds=0.8)))
    inputs = prepare_timing_inputs(model, profile, None, tmp_path / "inputs.npz")
    updates: list[tuple[str, int | None, str | None]] = []

    class Recorder:  # measure_cell shows the worker's progress lines on the display
        def __init__(self, description: str, total: int | None, unit: str) -> None:
            self.description = description

        def update(self, done: int | None, detail: str | None) -> None:
            updates.append((self.description, done, detail))

        def close(self) -> None:
            pass

    previous = progress.set_display(Recorder)
    try:
        measurement = measure_cell(Cell(Variant.from_file(model), profile, inputs), CellContext(tmp_path / "m"))
    finally:
        progress.set_display(previous)
    assert measurement.ok and measurement.latency is not None
    assert {description for description, _, _ in updates} == {"measure tiny_conv__progress"}
    counts = [int(done) for _, done, _ in updates if done is not None]
    assert len(counts) == len(updates) >= 2
    assert counts == sorted(counts) and counts[-1] <= measurement.latency.summary().n
    assert all(str(detail).startswith("CI ±") for _, _, detail in updates[1:]), updates  # the CI width so far
    assert len(counts) <= 0.8 / 0.25 + 2  # at most 4 a second (the first checkpoint always)


def test_a_task_without_a_display_does_nothing_and_a_display_sees_each_update() -> None:
    with progress.task("silent", unit="samples") as step:
        step.update(done=3, detail="x")  # no display: nothing to draw, nothing fails
    seen: list[tuple[str, int | None, str | None]] = []

    class Recorder:
        def __init__(self, description: str, total: int | None, unit: str) -> None:
            self.description = description

        def update(self, done: int | None, detail: str | None) -> None:
            seen.append((self.description, done, detail))

        def close(self) -> None:
            seen.append((self.description, None, "closed"))

    previous = progress.set_display(Recorder)
    try:
        with progress.task("layers", total=3, unit="layers") as step:
            step.advance()
            step.advance(2, detail="last")
    finally:
        progress.set_display(previous)
    assert seen == [("layers", 1, None), ("layers", 3, "last"), ("layers", None, "closed")]


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_logged_traceback_is_one_line_on_the_console_unless_verbose(verbose: int, tmp_path: Path) -> None:
    """A quantizer failing on a real model logs its traceback (kept in --log-file and run.log); the terminal gets
    the one line, and the stack only with -v."""
    console = io.StringIO()
    with output.configured(verbose=verbose, stream=console, log_file=tmp_path / "log.txt"):
        try:
            raise AssertionError("float16 converter assertion")
        except AssertionError as error:
            logging.getLogger("edgeopt.models.quantize").warning("variant fp16: quantizer failed on m.onnx",
                                                                  exc_info=error)
    assert "variant fp16: quantizer failed on m.onnx" in console.getvalue()
    assert ("Traceback" in console.getvalue()) == bool(verbose), console.getvalue()
    assert "Traceback" in (tmp_path / "log.txt").read_text()
