"""Rows of the second campaign: lifecycle (see tests/campaign2/table.py).

Signals outside measurement (calibration, report writing, tune, sweep, ab), a kill during variant making or
report writing followed by the command a user runs next, two commands on one ``--out``, a ``--out`` that is a
link to another model's run, a full TMPDIR, a file size limit, many runs in a row; and the pytest plugin misused.

A row whose story has a first step (a run killed before the resume, a command already writing the folder)
makes it in its builder: with :func:`tests.hostile_runner.run_edgeopt`, or as a :class:`_Background` command
that the row's ``ws.close`` waits for (and stops, at the latest) before the row is judged.  SIGINT rows start
edgeopt with SIGINT at its default action, as a terminal does, whatever the test session inherited.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import psutil
from onnx import TensorProto, helper, numpy_helper

from tests.campaign2.table import Workspace2, case, model_proto, profile_text
from tests.hostile_runner import Outcome, SignalPlan, appears, run_edgeopt, worker_running

Problems = list[tuple[str, str]]
Check = Callable[[Workspace2, Outcome], Problems]
EDGEOPT = [sys.executable, "-m", "edgeopt"]
LOCK = ".edgeopt.lock"
CALIBRATING = "out/variants/.work/.scratch-*/augmented.onnx"  # ONNX Runtime's calibrator is collecting ranges
INT8 = ("--variant", "int8-static-entropy", "--min-calibration-samples", "4")
SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
FIRST_STEP_S = 120.0  # the time limit of a row's first step
RAN = {"out_untouched": False}


# ============================================================================================== helpers


def _at_close(ws: Workspace2, action: Callable[[], None]) -> None:
    """Run ``action`` when the row's command has ended (or its builder failed), before the row is judged."""
    previous = ws.close

    def close() -> None:
        try:
            action()
        finally:
            previous()

    ws.close = close  # type: ignore[method-assign]


def _interruptible(ws: Workspace2) -> None:
    """Start the row's command with SIGINT at its default action (a terminal's Ctrl-C), then exec it as is."""
    rest = ws.command[1:] if ws.command is not None else ["-m", "edgeopt"]
    ws.command = [sys.executable, "-c", SIGINT_DEFAULT, *rest]


def _slow_text(name: str, seconds: float) -> str:
    """The campaign's profile, each row timed for ``seconds`` (no early stop on the interval, no sample cap)."""
    return profile_text(name, bench="  target_ci_rel: 0.0001\n  max_iterations: 100000000\n").replace(
        "max_seconds: 0.05", f"max_seconds: {seconds}")


def _run(ws: Workspace2, *args: object, variants: tuple[str, ...] = ("fp32",), out: str = "out") -> list[Any]:
    argv: list[Any] = ["run", ws.model, "--profile", ws.profile, "--out", out]
    for variant in variants:
        argv += ["--variant", variant]
    return argv + list(args)


def _int8_run(ws: Workspace2, *, fp32: bool = False) -> list[Any]:
    """The campaign's int8-static-entropy run on its 3000-sample "big" calibration set (fp32 too: a resume that
    passes, with a reference)."""
    argv = _run(ws, "--calibration", ws.calibration("big", 3000), variants=())
    return argv + (["--variant", "fp32"] if fp32 else []) + list(INT8)


def _first_step(ws: Workspace2, argv: list[Any], plan: SignalPlan, code: int, what: str) -> Outcome:
    """Run ``argv`` as the row's first step, stopped by ``plan``; it must have been stopped (exit ``code``)."""
    outcome = run_edgeopt([str(a) for a in argv], ws.root, FIRST_STEP_S, signal_plan=plan)
    if outcome.signalled_at is None or outcome.returncode != code or outcome.survivors:
        raise AssertionError(f"the first step ({what}) was not stopped as planned: exit {outcome.returncode}, "
                             f"signal at {outcome.signalled_at}, survivors {outcome.survivors}\n"
                             f"{outcome.stderr[-1500:]}")
    return outcome


def _new(pattern: str, before: set[Path]) -> Callable[[Path, list[psutil.Process]], bool]:
    """A :class:`SignalPlan` moment: a path matching ``pattern`` that was not there before."""
    def when(root: Path, tree: list[psutil.Process]) -> bool:
        return any(path not in before for path in root.glob(pattern))
    return when


def _writing_reports(root: Path, tree: list[psutil.Process]) -> bool:
    """A :class:`SignalPlan` moment: the run has written summary.json/md, junit.xml and results.csv, and renders
    report.html (the campaign's moment: the kill left report.html missing)."""
    return all((root / "out" / name).is_file() for name in ("summary.json", "summary.md", "junit.xml", "results.csv"))


def _kill_while_writing_reports(ws: Workspace2) -> Outcome:
    """The first step of the report rows: ``run`` (fp32) killed (SIGKILL to its group) while writing reports."""
    return _first_step(ws, _run(ws), SignalPlan(signal.SIGKILL, _writing_reports, group=True), -9,
                       "run killed while writing its reports")


_KEPT: dict[Path, Any] = {}  # what a builder hands to its row's check (the first command, a snapshot...)


def _keep(ws: Workspace2, value: Any) -> Any:
    _KEPT[ws.root] = value
    return value


def _kept(ws: Workspace2) -> Any:
    return _KEPT.pop(ws.root)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lock_pid(folder: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        return int(json.loads((folder / LOCK).read_text())["pid"])
    return None


def _debris(folder: Path) -> list[str]:
    """What no finished command may leave in a run folder: its lock, quantizer scratch folders, temporary files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name == LOCK or p.name.startswith(".scratch-") or p.name.endswith((".tmp", ".partial"))
                  or (p.name.startswith(".") and ".tmp" in p.name))


def _reports_whole(out: Path, required: bool) -> Problems:
    """Each report of ``out`` (when ``required``: every one) is whole: it parses, and ends where it should."""
    problems: Problems = []

    def summary(path: Path) -> None:
        from edgeopt.reports.run_summary import load_summary
        load_summary(path)

    def junit(path: Path) -> None:
        ET.parse(path)

    def table(path: Path) -> None:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if len(rows) < 2 or len({len(row) for row in rows}) != 1:
            raise ValueError(f"{len(rows)} rows of {sorted({len(row) for row in rows})} cells")

    def markdown(path: Path) -> None:
        if "verdict" not in path.read_text(encoding="utf-8"):
            raise ValueError("no verdict in it")

    def html(path: Path) -> None:
        if not path.read_text(encoding="utf-8").rstrip().endswith("</html>"):
            raise ValueError("it does not end with </html>")

    for name, read in (("summary.json", summary), ("junit.xml", junit), ("results.csv", table),
                       ("summary.md", markdown), ("report.html", html)):
        path = out / name
        if not path.exists():
            if required:
                problems.append(("bad", f"out/{name} is missing"))
            continue
        try:
            read(path)
        except Exception as error:  # noqa: BLE001 - any failure to read it is the finding
            problems.append(("bad", f"out/{name} is not whole: {type(error).__name__}: {error}"))
    return problems


def _whole_run(out: Path, variants: tuple[str, ...], profile: str = "fast") -> Problems:
    """``out`` is a finished, consistent run of ``variants``: nothing half-made or left over, summary.json lists
    exactly them, measured; each variant file is a valid model whose sha256 its provenance and its measurement
    record (a variant a killed command left half-made is rebuilt, not reused)."""
    from edgeopt.measure.stored import load_measurement

    problems: Problems = []
    if left := _debris(out):
        problems.append(("bad", f"left in the run folder: {', '.join(left[:6])}"))
    problems += _reports_whole(out, required=False)
    try:
        rows = json.loads((out / "summary.json").read_text())["rows"]
    except (OSError, ValueError, KeyError) as error:
        return [*problems, ("bad", f"out/summary.json: {error}")]
    listed = sorted(row["variant"] for row in rows if row.get("profile") == profile)
    if listed != sorted(variants):
        problems.append(("bad", f"summary.json lists {listed}, not {sorted(variants)}"))
    problems += [("bad", f"summary.json: {row['variant']} is {row.get('status')!r}, not measured")
                 for row in rows if row.get("status") != "ok"]
    for variant in variants:
        model = out / "variants" / f"{variant}.onnx"
        try:
            onnx.checker.check_model(str(model))
            sha = _sha(model)
            provenance = json.loads((out / "variants" / f"{variant}.provenance.json").read_text())
            measurement = load_measurement(out / "measurements" / f"{variant}__{profile}.json")
        except Exception as error:  # noqa: BLE001 - any failure to read them is the finding
            problems.append(("bad", f"{variant}: {type(error).__name__}: {str(error)[:300]}"))
            continue
        if not provenance.get("sha256") == measurement.variant.sha256 == sha:
            problems.append(("bad", f"{variant}: the file (sha256 {sha[:12]}), its provenance "
                                    f"({str(provenance.get('sha256'))[:12]}) and its measurement "
                                    f"({str(measurement.variant.sha256)[:12]}) disagree"))
    return problems


def _tree(folder: Path) -> dict[str, str]:
    """Every file and link of ``folder`` (hidden ones too): its sha256, or where the link points."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = _sha(path)
    return found


def _both(*checks: Check) -> Check:
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        return [problem for one in checks for problem in one(ws, outcome)]
    return check


def _stopped_clean(ws: Workspace2, outcome: Outcome) -> Problems:
    """A command stopped by SIGTERM or SIGINT leaves no lock, no scratch folder, no temporary file, and every
    variant and report it did write is whole."""
    problems: Problems = []
    if left := _debris(ws.out):
        problems.append(("bad", f"left behind after the signal: {', '.join(left[:6])}"))
    for model in sorted((ws.out / "variants").glob("*.onnx")):
        try:
            onnx.checker.check_model(str(model))
        except Exception as error:  # noqa: BLE001
            problems.append(("bad", f"{model.name} is half-made: {str(error)[:200]}"))
    return problems + _reports_whole(ws.out, required=False)


class _Background:
    """A command started beside the row's own, in its own session, with the row's TMPDIR: the row's first step.
    When the row's command has ended, ``ws.close`` lets it finish (``release`` first, if given), stopping it
    after ``wait_s``, and records its exit code, output and any process of its group that outlived it."""

    def __init__(self, ws: Workspace2, argv: list[Any], name: str, *, command: list[str] | None = None,
                 release: Callable[[], None] | None = None, wait_s: float = 90.0) -> None:
        self.log = ws.root / f"{name}.log"
        (ws.root / "TMPDIR").mkdir(exist_ok=True)
        environ = {k: v for k, v in os.environ.items() if k not in ("EDGEOPT_PROFILE_PATH", "GITHUB_STEP_SUMMARY")}
        environ.update({"TMPDIR": str(ws.root / "TMPDIR"), "PYTHONDONTWRITEBYTECODE": "1"})
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen([*(command or EDGEOPT), *[str(a) for a in argv]], cwd=ws.root,
                                            env=environ, stdout=sink, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.release, self.wait_s = release, wait_s
        self.code: int | None = None
        self.running_at_end: bool | None = None  # was it still running when the row's command ended?
        self.orphans: list[str] = []
        _at_close(ws, self.finish)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the first command never got to {what} (exit {self.process.poll()}):\n"
                                     f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def finish(self) -> None:
        self.running_at_end = self.process.poll() is None
        if self.release is not None:
            self.release()
        try:
            self.code = self.process.wait(timeout=self.wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
        time.sleep(0.2)
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if process.pid != self.pid and os.getpgid(process.pid) == self.pid:
                    self.orphans.append(f"pid {process.pid}: {' '.join(process.cmdline())[:200]}")
                    process.kill()

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def problems(self, codes: tuple[int, ...] = (0,)) -> Problems:
        found: Problems = [("bad", f"the first command's process outlived it: {o}") for o in self.orphans]
        if self.code not in codes:
            found.append(("bad", f"the first command ended with exit {self.code}, not {codes}: "
                                 f"{self.output.strip()[-600:]}"))
        if "Traceback" in self.output or "internal error" in self.output:
            found.append(("bad", f"the first command printed a traceback or an internal error: {self.output[-600:]}"))
        return found


# ========================================================================================== full TMPDIR


TMPFS = ('mount -t tmpfs -o size=256k tmpfs "$1" || exit 99; '
         'dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null; shift; '
         '"$@"; code=$?; ls -A "$TMPDIR" > tmpfs-after.txt; exit $code')


def _tmpdir_full_check(ws: Workspace2, outcome: Outcome) -> Problems:
    problems = _whole_run(ws.out, ("fp32", "int8-static-minmax"))
    listing = ws.root / "tmpfs-after.txt"
    after = set(listing.read_text().split()) if listing.is_file() else {"(no listing)"}
    if "fill" not in after:
        problems.append(("bad", f"the TMPDIR was not the full tmpfs (it holds {sorted(after)})"))
    if after - {"fill", ".ses"}:
        problems.append(("bad", f"left in the full TMPDIR: {sorted(after - {'fill', '.ses'})}"))
    fallback = [p.name for p in (ws.root / "fallback").iterdir() if p.name != ".ses"]
    if fallback:
        problems.append(("bad", f"left in the temporary folder Python fell back to: {fallback}"))
    return problems


@case("lc-tmpdir-full", "lifecycle", 0, r"verdict: PASS", stream="stdout", **RAN,
      root="mounts a 256 KiB tmpfs (in a mount namespace of the command's own, under the row's folder)",
      check=_tmpdir_full_check, timeout=90,
      note="TMPDIR is a full 256 KiB tmpfs (mounted under the row's folder in the command's own mount "
           "namespace, gone with it): the run works (Python falls back to the next temporary folder, here TEMP, "
           "a private one) and leaves nothing in either")
def build_lc_tmpdir_full(ws: Workspace2) -> list[Any]:
    unshare = shutil.which("unshare")
    tiny = ws.path("tinytmp/x").parent
    if unshare is None:
        import pytest
        pytest.skip("no unshare for a private tmpfs mount")
    probe = subprocess.run([unshare, "-m", "mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(tiny)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        import pytest
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()[:200]}")
    ws.path("fallback/x").parent.mkdir(exist_ok=True)
    ws.env.update({"TMPDIR": str(tiny), "TEMP": str(ws.root / "fallback")})
    ws.command = [unshare, "-m", "sh", "-c", TMPFS, "sh", str(tiny), *EDGEOPT]
    return _run(ws, "--calibration", ws.calibration(), "--min-calibration-samples", "4",
                variants=("fp32", "int8-static-minmax"))


# ============================================================================ signals during calibration


@case("lc-sigterm-calibration", "lifecycle", 143, r"stopped by SIGTERM", stream="stderr", **RAN,
      signal=SignalPlan(signal.SIGTERM, appears(CALIBRATING)), check=_stopped_clean, timeout=90,
      note="SIGTERM to edgeopt as ONNX Runtime's calibrator starts on the 3000 samples: 143, no scratch folder, "
           "no lock, no half-made variant, no process")
def build_lc_sigterm_calibration(ws: Workspace2) -> list[Any]:
    return _int8_run(ws)


@case("lc-sigint-calibration", "lifecycle", 130, r"edgeopt: interrupted", stream="stderr", **RAN,
      signal=SignalPlan(signal.SIGINT, appears(CALIBRATING)), check=_stopped_clean, timeout=90,
      note="Ctrl-C (SIGINT to edgeopt) during calibration: 130, nothing left")
def build_lc_sigint_calibration(ws: Workspace2) -> list[Any]:
    _interruptible(ws)
    return _int8_run(ws)


# ============================================================================= SIGKILL, then a resume


KILL_CALIBRATING = SignalPlan(signal.SIGKILL, appears(CALIBRATING), group=True)


def _resumed(ws: Workspace2, outcome: Outcome) -> Problems:
    return _whole_run(ws.out, ("fp32", "int8-static-entropy"))


@case("lc-sigkill-quantize-then-resume", "lifecycle", 0, r"taking over a stale lock left by pid \d+",
      stream="stderr", **RAN, check=_resumed, timeout=90,
      note="first step: the run killed (SIGKILL to its group) while calibrating; the same run again resumes: it "
           "takes the stale lock over with a notice and removes the killed run's scratch folders")
def build_lc_sigkill_quantize_then_resume(ws: Workspace2) -> list[Any]:
    argv = _int8_run(ws, fp32=True)
    _first_step(ws, argv, KILL_CALIBRATING, -9, "run killed while calibrating")
    if not any((ws.out / "variants" / ".work").glob(".scratch-*")) or not (ws.out / LOCK).exists():
        raise AssertionError("the killed run left no scratch folder or no lock: nothing for the resume to clean")
    return argv


@case("lc-sigkill-quantize-resume-2", "lifecycle", 0, r"taking over a stale lock", stream="stderr", **RAN,
      check=_resumed, timeout=90,
      note="killed while calibrating, then the resume killed while calibrating again: the second resume "
           "completes and the folder is consistent (the int8 variant rebuilt, not reused half-made)")
def build_lc_sigkill_quantize_resume_2(ws: Workspace2) -> list[Any]:
    argv = _int8_run(ws, fp32=True)
    _first_step(ws, argv, KILL_CALIBRATING, -9, "run killed while calibrating")
    before = set(ws.root.glob(CALIBRATING))
    _first_step(ws, argv, SignalPlan(signal.SIGKILL, _new(CALIBRATING, before), group=True), -9,
                "resume killed while calibrating")
    return argv


# ======================================================================= signals while writing reports


def _killed_reports(ws: Workspace2, outcome: Outcome) -> Problems:
    problems = _reports_whole(ws.out, required=False)
    if not (ws.out / "summary.json").is_file():
        problems.append(("bad", "out/summary.json is missing: the signal came before the reports"))
    pid = _lock_pid(ws.out)
    if pid is not None and psutil.pid_exists(pid) and pid != os.getpid():
        with contextlib.suppress(psutil.Error):
            if "edgeopt" in " ".join(psutil.Process(pid).cmdline()):
                problems.append(("bad", f"the lock names pid {pid}, which still runs"))
    return problems


@case("lc-sigkill-report-writing", "lifecycle", -9, stream="stderr", **RAN, check=_killed_reports,
      signal=SignalPlan(signal.SIGKILL, _writing_reports, group=True), timeout=60,
      note="SIGKILL to the run's group once summary.json/md, junit.xml and results.csv are written (report.html "
           "follows): every report written is whole (atomic files); the lock file a SIGKILL leaves is the next "
           "rows' business")
def build_lc_sigkill_report_writing(ws: Workspace2) -> list[Any]:
    def keep_what_a_kill_leaves() -> None:  # a killed process cannot remove its lock file (or a half-written temp)
        ws.preserved.update(p for p in ws.out.rglob(".*") if p.name == LOCK or ".tmp" in p.name)
    _at_close(ws, keep_what_a_kill_leaves)
    return _run(ws)


def _reported_again(ws: Workspace2, outcome: Outcome) -> Problems:
    problems = _reports_whole(ws.out, required=True)
    return problems + ([("bad", f"left in out/: {_debris(ws.out)}")] if _debris(ws.out) else [])


@case("lc-sigkill-report-then-report", "lifecycle", 0, r"taking over a stale lock left by pid \d+, edgeopt run",
      stream="stderr", **RAN, check=_reported_again, timeout=60,
      note="first step: the run killed while writing its reports; 'edgeopt report out' takes the stale lock over "
           "with a notice and writes every report whole")
def build_lc_sigkill_report_then_report(ws: Workspace2) -> list[Any]:
    _kill_while_writing_reports(ws)
    return ["report", "out"]


@case("lc-sigkill-report-then-gate", "lifecycle", 0, r"fp32 on fast: pass", stream="stdout", **RAN, timeout=60,
      note="first step: the run killed while writing its reports; gate reads its measurement (gate writes nothing "
           "and leaves the killed run's lock file to the next writer)")
def build_lc_sigkill_report_then_gate(ws: Workspace2) -> list[Any]:
    _kill_while_writing_reports(ws)
    # what the kill left (its lock, a temporary file if it died writing one) is the next writer's business:
    # gate writes nothing and takes no lock
    ws.preserved.update(p for p in ws.out.rglob(".*") if p.name == LOCK or ".tmp" in p.name)
    return ["gate", *sorted(str(p.relative_to(ws.root)) for p in (ws.out / "measurements").glob("*.json"))]


@case("lc-sigterm-report-writing", "lifecycle", 143, r"stopped by SIGTERM", stream="stderr", **RAN,
      signal=SignalPlan(signal.SIGTERM, _writing_reports), check=_both(_stopped_clean, _killed_reports), timeout=60,
      note="SIGTERM to edgeopt while it renders report.html: 143, every report written whole, no temporary "
           "file, no lock")
def build_lc_sigterm_report_writing(ws: Workspace2) -> list[Any]:
    return _run(ws)


# ================================================================================= tune, sweep, ab


@case("lc-sigterm-tune", "lifecycle", 143, r"stopped by SIGTERM", stream="stderr", **RAN,
      signal=SignalPlan(signal.SIGTERM, appears("out/measurements/fp32__fast.json")), check=_stopped_clean,
      timeout=90, note="SIGTERM to tune once it has measured fp32 (it goes on to quantize): 143, clean")
def build_lc_sigterm_tune(ws: Workspace2) -> list[Any]:
    return ["tune", ws.model, "--calibration", ws.calibration(), "--eval", ws.eval_set(), "--profile", ws.profile,
            "--max-drop", "0.001", "--out", "out"]


@case("lc-sigint-sweep", "lifecycle", 130, r"edgeopt: interrupted", stream="stderr", **RAN,
      signal=SignalPlan(signal.SIGINT, appears("out/measurements/*.json")), check=_stopped_clean, timeout=90,
      note="Ctrl-C to sweep once its first measurement is stored (six more follow): 130, clean")
def build_lc_sigint_sweep(ws: Workspace2) -> list[Any]:
    _interruptible(ws)
    return ["sweep", ws.model, "--calibration", ws.calibration(), "--profile", ws.profile,
            "--methods", "minmax,entropy,percentile", "--per-channel", "both", "--out", "out"]


def _ab_worker_running(root: Path, tree: list[psutil.Process]) -> bool:
    """A :class:`SignalPlan` moment: ab's interleaving worker (``edgeopt.measure.ab_worker``) runs."""
    for process in tree:
        with contextlib.suppress(psutil.Error):
            if any("edgeopt.measure.ab_worker" in part for part in process.cmdline()):
                return True
    return False


@case("lc-sigint-ab-same", "lifecycle", 130, r"edgeopt: interrupted", stream="stderr", **RAN,
      signal=SignalPlan(signal.SIGINT, _ab_worker_running, delay=1.0), check=_stopped_clean, timeout=60,
      note="Ctrl-C 1 s into 'ab good.onnx good.onnx --max-seconds 20' (one model twice; the profile's interval "
           "target out of reach, so ab would run the 20 s): 130, the ab worker gone, clean")
def build_lc_sigint_ab_same(ws: Workspace2) -> list[Any]:
    _interruptible(ws)
    profile = ws.text("slow/fast.yaml", _slow_text("fast", 0.05))
    return ["ab", ws.model, ws.model, "--profile", profile, "--max-seconds", "20", "--out", "out"]


# ======================================================================== two commands on one --out


def _refusal_names(first: _Background, command: str, outcome: Outcome) -> Problems:
    if f"pid {first.pid}, edgeopt {command}" not in outcome.message:
        return [("bad", f"the refusal does not name the holder, pid {first.pid} (edgeopt {command})")]
    return []


BUSY = r"another edgeopt command is writing this folder"


def _run_and_report_check(ws: Workspace2, outcome: Outcome) -> Problems:
    first = _kept(ws)
    return _refusal_names(first, "run", outcome) + first.problems() + _whole_run(ws.out, ("fp32", "fp16"))


@case("lc-concurrent-run-and-report", "lifecycle", 2, r"<case>/out\b", BUSY, r"pid \d+, edgeopt run",
      r"wait for it to finish", absent=(r"--out",), **RAN, check=_run_and_report_check, timeout=60,
      note="'report out' while 'run --force' re-measures that folder: refused at once naming the run; the run "
           "finishes whole.  'report' has no --out: the refusal must not advise choosing another one")
def build_lc_concurrent_run_and_report(ws: Workspace2) -> list[Any]:
    ws.seed("out")
    slow = ws.text("slow/fast.yaml", _slow_text("fast", 2))
    first = _Background(ws, ["run", ws.model, "--profile", slow, "--out", "out", "--variant", "fp32",
                             "--variant", "fp16", "--force"], "run")
    first.wait_for(lambda: _lock_pid(ws.out) == first.pid, "hold the lock of out/")
    _keep(ws, first)
    return ["report", "out"]


def _tune_and_run_check(ws: Workspace2, outcome: Outcome) -> Problems:
    first = _kept(ws)
    problems = _refusal_names(first, "tune", outcome) + first.problems()
    if not (ws.out / "tune.json").is_file():
        problems.append(("bad", "the tune did not finish: no out/tune.json"))
    return problems + ([("bad", f"left in out/: {_debris(ws.out)}")] if _debris(ws.out) else [])


@case("lc-concurrent-tune-and-run", "lifecycle", 2, r"<case>/out\b", BUSY, r"pid \d+, edgeopt tune", **RAN,
      check=_tune_and_run_check, timeout=60,
      note="'run' on the folder a tune is writing: refused at once naming the tune's pid; the tune finishes")
def build_lc_concurrent_tune_and_run(ws: Workspace2) -> list[Any]:
    slow = ws.profile_file("slow", _slow_text("slow", 1.5))
    first = _Background(ws, ["tune", ws.model, "--calibration", ws.calibration(), "--eval", ws.eval_set(),
                             "--profile", slow, "--max-drop", "0.001", "--out", "out"], "tune")
    first.wait_for(lambda: _lock_pid(ws.out) == first.pid, "hold the lock of out/")
    _keep(ws, first)
    return _run(ws)


def _rerun_and_gate_check(ws: Workspace2, outcome: Outcome) -> Problems:
    first = _kept(ws)
    problems = first.problems(codes=(0, 5))  # 5: some rerun did not reproduce the stored figures (a busy host)
    if not first.running_at_end:
        problems.append(("weak", "the rerun had finished before gate did: the two did not overlap"))
    seed = ws.shared.make_seed() / "measurements"
    for path in sorted(seed.glob("*.json")):
        if _sha(path) != _sha(ws.out / "measurements" / path.name):
            problems.append(("bad", f"out/measurements/{path.name} was changed"))
    reruns = sorted(ws.out.glob("fp32__fast__rerun*.json"))
    if len(reruns) != 20:
        problems.append(("bad", f"the rerun wrote {len(reruns)} re-measurements, not 20"))
    return problems + ([("bad", f"left in out/: {_debris(ws.out)}")] if _debris(ws.out) else [])


@case("lc-concurrent-rerun-and-gate", "lifecycle", 0, r"fp32 on fast: pass", r"int8-static-minmax on fast: pass",
      stream="stdout", **RAN, check=_rerun_and_gate_check, timeout=60,
      note="'gate out/measurements/*.json' while 'rerun --times 20 --out out' writes into that folder: gate reads "
           "whole files (atomic) and passes; the stored measurements are untouched")
def build_lc_concurrent_rerun_and_gate(ws: Workspace2) -> list[Any]:
    ws.seed("out")
    first = _Background(ws, ["rerun", "out/measurements/fp32__fast.json", "--times", "20", "--out", "out"], "rerun")
    first.wait_for(lambda: any(ws.out.glob("fp32__fast__rerun*.json")), "write its first re-measurement")
    _keep(ws, first)
    return ws.shell("exec $EDGEOPT gate out/measurements/*.json")


# ================================================================================ --out of another run


def _other_model(ws: Workspace2) -> Path:
    """The campaign's optin.onnx: ``x`` [1, 4] + ``bias`` (an input with an initializer default)."""
    graph = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["y"])], "optin",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                               helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.ones((1, 4), np.float32), "bias")])
    return ws.save(model_proto(graph), "optin.onnx")


def _other_run_untouched(ws: Workspace2, outcome: Outcome) -> Problems:
    before, after = _kept(ws), _tree(ws.out)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    problems: Problems = [("bad", f"the other model's run folder changed: {changed[:6]}")] if changed else []
    if not (ws.root / "link").is_symlink():
        problems.append(("bad", "the --out link was replaced"))
    return problems


@case("lc-out-symlink-to-other-run", "lifecycle", 2, r"--out link", r"results of another model", r"good\.onnx",
      r"optin\.onnx", r"--force", **RAN, check=_other_run_untouched, timeout=60,
      note="--out is a link to good.onnx's finished run; running optin.onnx there is refused naming both models, "
           "and the other run is untouched (not a file changed)")
def build_lc_out_symlink_to_other_run(ws: Workspace2) -> list[Any]:
    ws.seed("out")
    (ws.root / "link").symlink_to("out", target_is_directory=True)
    _keep(ws, _tree(ws.out))
    return ["run", _other_model(ws), "--profile", ws.profile, "--out", "link", "--variant", "fp32"]


# ================================================================================ file size limit


def _no_partial_files(ws: Workspace2, outcome: Outcome) -> Problems:
    problems: Problems = [("bad", f"left in out/: {_debris(ws.out)}")] if _debris(ws.out) else []
    for path in sorted(ws.out.rglob("*.json")):
        try:
            json.loads(path.read_text())
        except ValueError as error:
            problems.append(("bad", f"{path.relative_to(ws.root)} is a partial file: {error}"))
    if (ws.out / "measurements" / "int8-static-entropy__fast.json").exists():
        problems.append(("bad", "the measurement that could not be written exists"))
    return problems


@case("lc-fsize-limit-during-calibration", "lifecycle", 2,
      r"(<case>/out/measurements/int8-static-entropy__fast\.json|<case>/TMPDIR/edgeopt-worker-\w+/result\.json): "
      r"File too large", file_size_limit=16 * 1024, **RAN, check=_no_partial_files, timeout=90,
      note="RLIMIT_FSIZE 16 KiB (ulimit -f 16) on an int8-static-entropy run: the calibration's files are "
           "smaller, so the first file that cannot be written is the ~20 kB measurement (the worker's result in "
           "TMPDIR, or the document in out/, whichever is the larger on the day); exit 2 naming that file (not "
           "the folder), no partial file")
def build_lc_fsize_limit_during_calibration(ws: Workspace2) -> list[Any]:
    return _run(ws, "--calibration", ws.calibration(), *INT8, variants=())


# ================================================================================== many runs in a row


RUNS = 6
FDS_AT_EXIT = ("import atexit, json, os, runpy, sys\n"
               "def record():\n"
               "    here, fds = os.getcwd(), {}\n"
               "    for fd in os.listdir('/proc/self/fd'):\n"
               "        try:\n"
               "            fds[fd] = os.readlink(f'/proc/self/fd/{fd}')\n"
               "        except OSError:\n"
               "            pass\n"
               "    with open('fds.jsonl', 'a') as handle:\n"
               "        handle.write(json.dumps({'count': len(fds), 'in_folder': sorted(\n"
               "            t for t in fds.values() if t.startswith(here) and not t.endswith('fds.jsonl'))}) + '\\n')\n"
               "atexit.register(record)\n"
               "sys.argv[0] = 'edgeopt'\n"
               "runpy.run_module('edgeopt', run_name='__main__', alter_sys=True)\n")


def _state(ws: Workspace2, outcome: Outcome) -> dict[str, int]:
    files = [p for p in ws.out.rglob("*") if p.is_file()]
    return {"exit": outcome.returncode if outcome.returncode is not None else -1,
            "files": len(files), "bytes": sum(p.stat().st_size for p in files if p.name != "run.log"),
            "log_lines": len((ws.out / "run.log").read_text().splitlines()),
            "tmp": len([p for p in (ws.root / "TMPDIR").iterdir() if p.name != ".ses"]),
            "survivors": len(outcome.survivors)}


def _series_check(ws: Workspace2, outcome: Outcome) -> Problems:
    series = [*_kept(ws), _state(ws, outcome)]
    exits = [json.loads(line) for line in (ws.root / "fds.jsonl").read_text().splitlines()]
    fds = [record["count"] for record in exits]
    problems: Problems = []
    if any(state["exit"] != 0 for state in series) or len(fds) != RUNS:
        problems.append(("bad", f"exit codes {[s['exit'] for s in series]}, {len(fds)} fd counts of {RUNS} runs"))
    if any(state["tmp"] or state["survivors"] for state in series):
        problems.append(("bad", f"temporary folders {[s['tmp'] for s in series]}, processes left "
                                f"{[s['survivors'] for s in series]}"))
    if len({state["files"] for state in series}) != 1:
        problems.append(("bad", f"the folder's file count grows: {[s['files'] for s in series]}"))
    resumed = series[1:]
    if resumed[-1]["bytes"] - resumed[0]["bytes"] > 2048:
        problems.append(("bad", f"the folder grows (run.log aside): {[s['bytes'] for s in series]} bytes"))
    if fds and (fds[-1] > fds[1] + 1 or max(fds) - min(fds) > 2):  # +-1: a pipe a finishing thread still holds
        problems.append(("bad", f"open file descriptors at exit grow: {fds}"))
    if held := sorted({target for record in exits for target in record["in_folder"]}):
        problems.append(("bad", f"files of the row's folder still open at exit: {held[:5]}"))
    lines = [s["log_lines"] for s in series]
    if len({b - a for a, b in zip(lines, lines[1:], strict=False)}) != 1:
        problems.append(("weak", f"run.log lines after each run: {lines} (not a steady few lines a run)"))
    problems += _whole_run(ws.out, ("fp32", "int8-static-minmax"))
    return problems


@case("lc-30-runs-resume", "lifecycle", 0, r"verdict: PASS", stream="stdout", **RAN, check=_series_check,
      timeout=90,
      note=f"{RUNS} runs in a row on one --out (the campaign ran 30; each later one resumes): the same files, no "
           "growth but run.log's few lines a run, no process, no temporary folder, as many open descriptors at "
           "each exit and none into the folder")
def build_lc_30_runs_resume(ws: Workspace2) -> list[Any]:
    ws.command = [sys.executable, "-c", FDS_AT_EXIT]
    argv = [str(a) for a in _run(ws, "--calibration", ws.calibration(), "--min-calibration-samples", "4",
                                 variants=("fp32", "int8-static-minmax"))]
    series = []
    for _ in range(RUNS - 1):
        outcome = run_edgeopt(argv, ws.root, FIRST_STEP_S, command=ws.command)
        series.append(_state(ws, outcome))
    _keep(ws, series)
    return argv


# ========================================================================================= pytest plugin


def _no_work_left(ws: Workspace2, outcome: Outcome) -> Problems:
    """The plugin's work folders are gone (they live under --basetemp while the session runs)."""
    left = [str(p.relative_to(ws.root)) for p in ws.root.glob("basetemp*/edgeopt*")]
    left += [str(p.relative_to(ws.root)) for p in ws.root.glob("*__fast-*")]
    return [("bad", f"the plugin's work folders are left: {left[:5]}")] if left else []


@case("pt-missing-model", "pytest", 1, r"edgeopt: nope/missing\.onnx: model file not found", r"\b1 failed\b",
      absent=(r"During handling|another exception occurred",), stream="stdout", check=_no_work_left, timeout=60,
      note="edgeopt_budget('nope/missing.onnx'): the test fails with the one line, no chained exception")
def build_pt_missing_model(ws: Workspace2) -> list[Any]:
    return ws.pytest("def test_missing(edgeopt_budget):\n    edgeopt_budget('nope/missing.onnx', p95_ms=10)\n",
                     "--basetemp", ws.root / "basetemp")


@case("pt-unknown-budget-kwarg", "pytest", 1, r"p95_ms: expected a number of milliseconds, got 'fast'",
      r"p97_ms: unknown key", r"\b2 failed\b",
      absent=(r"During handling|another exception occurred", r"validation error for|pydantic|Extra inputs"),
      stream="stdout", check=_no_work_left, timeout=60,
      note="edgeopt_budget(m, p97_ms=10, p95_ms='fast') and (m, p97_ms=10): each test fails with one line naming "
           "the keyword, no pydantic text, no chained exception")
def build_pt_unknown_budget_kwarg(ws: Workspace2) -> list[Any]:
    model = str(ws.model)
    return ws.pytest(f"def test_kw(edgeopt_budget):\n    edgeopt_budget({model!r}, p97_ms=10, p95_ms='fast')\n\n"
                     f"def test_unknown(edgeopt_budget):\n    edgeopt_budget({model!r}, p97_ms=10)\n",
                     "--basetemp", ws.root / "basetemp")


@case("pt-exception-inside-test", "pytest", 2, r"RuntimeError: boom in body", r"KeyboardInterrupt",
      stream="stdout", check=_no_work_left, timeout=60,
      note="a marked test whose body raises, then a test that measures and raises KeyboardInterrupt: the body's "
           "error is reported, the session stops (2), no worker, work folder or temporary file left")
def build_pt_exception_inside_test(ws: Workspace2) -> list[Any]:
    model = str(ws.model)
    return ws.pytest(f"import pytest\n\n@pytest.mark.edgeopt({model!r}, p95_ms=1000)\ndef test_body_fails():\n"
                     f"    raise RuntimeError('boom in body')\n\ndef test_fixture_then_raise(edgeopt_budget):\n"
                     f"    edgeopt_budget({model!r}, p95_ms=1000)\n    raise KeyboardInterrupt\n",
                     "--basetemp", ws.root / "basetemp")


def _nothing_outside_save(ws: Workspace2, outcome: Outcome) -> Problems:
    problems = _no_work_left(ws, outcome)
    pwned = [str(p) for p in [*ws.root.rglob("*pwned*"), *ws.root.parent.glob("*pwned*")]]
    if pwned:
        problems.append(("bad", f"written outside --edgeopt-save: {pwned[:5]}"))
    saved = [str(p.relative_to(ws.root)) for p in (ws.root / "saved").rglob("*") if p.is_file()]
    if saved:
        problems.append(("bad", f"saved for a refused name: {saved[:5]}"))
    return problems


@case("pt-name-traversal-save", "pytest", 1, r"name='\.\./\.\./pwned': a name is letters",
      r"name='<script>x</script>/\.\.': a name is letters", r"\b2 failed\b",
      absent=(r"During handling", r"FileNotFoundError"), stream="stdout", check=_nothing_outside_save, timeout=60,
      note="name='../../pwned' and name='<script>x</script>/..' with --edgeopt-save saved/a/b: both refused with "
           "one line; nothing written outside saved/a/b (nothing at all), no work folder in the cwd")
def build_pt_name_traversal_save(ws: Workspace2) -> list[Any]:
    model = str(ws.model)
    return ws.pytest(f"def test_trav(edgeopt_budget):\n"
                     f"    edgeopt_budget({model!r}, p95_ms=1000, name='../../pwned')\n\n"
                     f"def test_html(edgeopt_budget):\n"
                     f"    edgeopt_budget({model!r}, p95_ms=1000, name='<script>x</script>/..')\n",
                     "--edgeopt-save", "saved/a/b", "--basetemp", ws.root / "basetemp")


SESSION_A = """\
import time
from pathlib import Path


def test_a(edgeopt_budget):
    edgeopt_budget({model!r}, p95_ms=1000, name="model")
    Path("a-measured").touch()
    deadline = time.monotonic() + 60
    while not Path("release").exists() and time.monotonic() < deadline:  # a long session (an xdist worker)
        time.sleep(0.05)
"""


def _two_sessions_check(ws: Workspace2, outcome: Outcome) -> Problems:
    first = _kept(ws)
    problems = first.problems() + _no_work_left(ws, outcome)
    if f"(pid {first.pid}, edgeopt pytest --edgeopt-save model__fast" not in outcome.stdout:
        problems.append(("bad", f"the failure does not name the session holding the name, pid {first.pid}"))
    saved = ws.root / "saved"
    names = sorted(p.name for p in saved.iterdir()) if saved.is_dir() else []
    if names != ["model__fast.json"]:
        problems.append(("bad", f"saved/ holds {names}, not model__fast.json alone (no claim left)"))
    else:
        document = json.loads((saved / "model__fast.json").read_text())
        if document["variant"]["sha256"] != _sha(ws.model):
            problems.append(("bad", "saved/model__fast.json is not the first session's model (overwritten)"))
    return problems


@case("pt-two-sessions-one-save-dir", "pytest", 1, r"another pytest session is saving model__fast\.json there",
      r"\(pid \d+", r"its own name= or its own --edgeopt-save", r"\b1 failed\b",
      absent=(r"During handling",), stream="stdout", check=_two_sessions_check, timeout=60,
      note="session A (good.onnx, name='model') holds saved/ while session B saves optin.onnx under the same "
           "name: B's test fails naming A's pid; A passes and its file stays A's")
def build_pt_two_sessions_one_save_dir(ws: Workspace2) -> list[Any]:
    ws.text("test_a.py", SESSION_A.format(model=str(ws.model)))
    other = _other_model(ws)
    first = _Background(ws, ["test_a.py", "--edgeopt-profile", ws.profile, "--edgeopt-save", "saved",
                             "--basetemp", ws.root / "basetemp-a"], "session-a",
                        command=[sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"],
                        release=lambda: (ws.root / "release").touch())
    first.wait_for(lambda: (ws.root / "a-measured").exists(), "measure and hold the name 'model'")
    _keep(ws, first)
    return ws.pytest(f"def test_b(edgeopt_budget):\n    edgeopt_budget({str(other)!r}, p95_ms=1000, name='model')\n",
                     "--edgeopt-save", "saved", "--basetemp", ws.root / "basetemp-b")


@case("pt-sigint-during-measure", "pytest", 2, r"KeyboardInterrupt", stream="stdout", check=_no_work_left,
      signal=SignalPlan(signal.SIGINT, worker_running, delay=2.0), timeout=60,
      note="Ctrl-C to pytest 2 s into a 30 s measurement: the session stops (2), no worker, work folder or "
           "temporary file left")
def build_pt_sigint_during_measure(ws: Workspace2) -> list[Any]:
    slow = ws.text("slowpt.yaml", _slow_text("slowpt", 30))
    argv = ws.pytest(f"def test_slow(edgeopt_budget):\n"
                     f"    edgeopt_budget({str(ws.model)!r}, p95_ms=1000, profile={str(slow)!r})\n",
                     "--basetemp", ws.root / "basetemp")
    _interruptible(ws)
    return argv
