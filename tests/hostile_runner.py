"""How a hostile case is run and judged, shared by the campaign tables (``tests/hostile_cases.py`` of issue 12,
``tests/campaign2/`` of issue 23): the command runs as a real subprocess in its own session with a private TMPDIR
and a marker in its environment, under a time limit (then SIGTERM, as a cancelled CI job does, and SIGKILL
later), optionally with a signal sent at a given moment; :func:`judge` then lists every way the outcome
misses its case, each ``bad`` or ``weak`` (see ``tests/test_hostile_inputs.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.hostile_cases import Case, Workspace

MARKER = "EDGEOPT_HOSTILE_CASE"  # environment variable every process of a case inherits
HIDDEN_TEMP = re.compile(r"^\..*(\.tmp|\.job\.json|\.result\.json)$|^\..*\.tmp\b|^\.edgeopt\.lock$")
ERROR_PREFIX = "edgeopt: error: "
LONGEST_MESSAGE = 4000  # characters: an error that echoes a hostile file back is not one line
TERM_GRACE_S = 10.0  # a command that hangs gets SIGTERM, then SIGKILL this much later
GRACE_S = 1.0  # a killed worker is given this long to be reaped before it counts as having outlived the command
RUNTIME_TMP_FILES = {".ses"}  # onnxruntime's own marker, written into TMPDIR by ``import onnxruntime``


# ------------------------------------------------------------------------------------------- running a case


@dataclass(frozen=True)
class SignalPlan:
    """Send ``signum`` once ``when(case folder, the command's process tree)`` holds, ``delay`` s later; to the
    command's whole process group (``group``, as a killed CI job or a closed terminal does) or to the command
    alone (as ``kill PID`` does)."""

    signum: int
    when: Callable[[Path, list[psutil.Process]], bool]
    delay: float = 0.0
    group: bool = False


def worker_running(root: Path, tree: list[psutil.Process]) -> bool:
    """A :class:`SignalPlan` moment: a process of the command runs ``edgeopt.measure.worker``."""
    for process in tree:
        with contextlib.suppress(psutil.Error):
            if any("edgeopt.measure.worker" in part for part in process.cmdline()):
                return True
    return False


def appears(pattern: str) -> Callable[[Path, list[psutil.Process]], bool]:
    """A :class:`SignalPlan` moment: a path matching the glob ``pattern`` (relative to the case folder) exists."""
    def when(root: Path, tree: list[psutil.Process]) -> bool:
        return any(True for _ in root.glob(pattern))
    return when


@dataclass
class Outcome:
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    stopped_by_term: bool = False
    survivors: list[str] = field(default_factory=list)
    signalled_at: float | None = None  # seconds after the start when the case's signal was sent

    @property
    def message(self) -> str:
        """The error message: from ``edgeopt: error:`` to the end of stderr ('' when there is none)."""
        index = self.stderr.find(ERROR_PREFIX)
        return self.stderr[index:].strip() if index >= 0 else ""


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid", "environ"]):
        environ = process.info.get("environ") or {}
        if environ.get(MARKER) == marker and process.pid != os.getpid():
            found.append(process)
    return found


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid}: {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {process.pid}"


def _stop(process: subprocess.Popen[bytes]) -> bool:
    """Stop a command that ran past its time as CI would: SIGTERM to its group, SIGKILL after
    :data:`TERM_GRACE_S`.  True when SIGTERM was enough."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TERM_GRACE_S)
        return True
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return False


def _child_setup(limit: int | None) -> Callable[[], None]:
    """What the child does before exec: SIGINT back to its default, as a foreground command at a terminal has it
    (a test session started in the background, ``cmd &`` without job control or ``nohup``, hands its children
    SIGINT ignored, and edgeopt keeps a signal it was started with ignored); with ``limit``, its files (and its
    workers') stop growing at ``limit`` bytes."""
    def apply() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99; shift; exec "$@"'
NO_MOUNT = 99  # the exit status of READ_ONLY_MOUNT when this host cannot mount


def _read_only_prefix(folder: Path | None) -> list[str]:
    """What runs the command with ``folder`` read-only: nothing for a user (the folder is chmod-ed), for root
    (whom permissions do not bind) ``unshare -m`` and a read-only bind mount seen by the command alone."""
    if folder is None or os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("root ignores file permissions, and there is no unshare for a read-only mount")
    return [unshare, "-m", "sh", "-c", READ_ONLY_MOUNT, "sh", str(folder)]


def run_edgeopt(argv: list[str], cwd: Path, timeout: float, file_size_limit: int | None = None,
                read_only: Path | None = None, *, command: list[str] | None = None,
                env: dict[str, str | None] | None = None, signal_plan: SignalPlan | None = None,
                daemons: bool = False) -> Outcome:
    """``python -m edgeopt ARGV`` (or ``COMMAND ARGV``) in ``cwd`` with a private TMPDIR and a marker in its
    environment; ``env`` adds variables to it (``None`` removes one).  ``daemons``: the command starts
    processes meant to outlive it (a Ray node): they are neither reported nor stopped."""
    marker = uuid.uuid4().hex
    tmpdir = cwd / "TMPDIR"
    tmpdir.mkdir(exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k not in ("EDGEOPT_PROFILE_PATH", "GITHUB_STEP_SUMMARY")}
    environ.update({MARKER: marker, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1"})
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    seen: dict[int, psutil.Process] = {}
    timed_out = stopped_by_term = False
    signalled_at = moment = None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        prefix = command if command is not None else [sys.executable, "-m", "edgeopt"]
        process = subprocess.Popen([*_read_only_prefix(read_only), *prefix, *argv], cwd=cwd, env=environ,
                                   stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_child_setup(file_size_limit))
        while process.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                timed_out = True
                stopped_by_term = _stop(process)
                break
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
            if signal_plan is not None and signalled_at is None:
                if moment is None and signal_plan.when(cwd, [p for p in seen.values() if _alive(p)]):
                    moment = elapsed
                if moment is not None and elapsed >= moment + signal_plan.delay:
                    with contextlib.suppress(ProcessLookupError):
                        if signal_plan.group:
                            os.killpg(process.pid, signal_plan.signum)
                        else:
                            process.send_signal(signal_plan.signum)
                    signalled_at = elapsed
            time.sleep(0.05)
        process.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    alive: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + GRACE_S
    while not daemons:
        alive = {p.pid: p for p in [*seen.values(), *_marked(marker)] if _alive(p)}
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    survivors = [_describe(p) for p in alive.values()]
    for leftover in alive.values():  # do not let one row's orphan disturb the next rows
        try:
            leftover.kill()
        except psutil.Error:
            pass
    return Outcome(argv, None if timed_out else process.returncode, stdout, stderr, seconds, timed_out,
                   stopped_by_term, survivors, signalled_at)


# ----------------------------------------------------------------------------------------------- the checks


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() or p.is_symlink()) if directory.is_dir() else []


def judge(case: Case, ws: Workspace, outcome: Outcome) -> list[tuple[str, str]]:
    """Every way ``outcome`` misses ``case``: (``bad`` or ``weak``, what)."""
    problems: list[tuple[str, str]] = []
    everything = outcome.stdout + outcome.stderr
    if outcome.timed_out:
        how = "SIGTERM stopped it" if outcome.stopped_by_term else f"SIGTERM did not stop it in {TERM_GRACE_S:g} s"
        problems.append(("bad", f"hang: no exit within {case.timeout:g} s ({how})"))
    if "Traceback" in everything:
        problems.append(("bad", "a traceback was printed"))
    if "internal error" in everything:
        problems.append(("bad", "an internal error was reported"))
    for survivor in outcome.survivors:
        problems.append(("bad", f"process outlived the command: {survivor}"))
    hidden = [p for p in ws.root.rglob(".*") if p.is_file() and HIDDEN_TEMP.search(p.name) and p not in ws.preserved]
    for path in hidden:
        problems.append(("bad", f"hidden temporary file left behind: {path.relative_to(ws.root)}"))
    for path in _files(ws.root / "TMPDIR"):
        if path.name in RUNTIME_TMP_FILES:
            continue
        problems.append(("bad", f"left in TMPDIR: {path.relative_to(ws.root)}"))
    code = outcome.returncode
    if code is not None and code != case.code:
        if case.code in (2, 3) and code in (2, 3):
            problems.append(("weak", f"exit {code}, expected {case.code}"))
        elif case.code in (2, 3, 4) and code in (0, 1, 5):
            problems.append(("bad", f"exit {code}: the hostile input was accepted (expected exit {case.code})"))
        else:
            problems.append(("bad", f"exit {code}, expected {case.code}"))
    if case.stream == "error":
        message = outcome.message
        if code not in (None, 0) and not message:
            problems.append(("bad", "no 'edgeopt: error: ...' message"))
        if outcome.stderr.count(ERROR_PREFIX) > 1:
            problems.append(("weak", "more than one error message"))
        if len(message) > LONGEST_MESSAGE:
            problems.append(("weak", f"the error message is {len(message)} characters long"))
        text = message
    else:
        text = outcome.stdout if case.stream == "stdout" else outcome.stderr
    for root in {str(ws.root.resolve()), str(ws.root)}:  # its name repeats the case id: match no phrase there
        text = text.replace(root, "<case>")
    for phrase in case.phrases:
        if not re.search(phrase, text, re.IGNORECASE):
            problems.append(("weak", f"message lacks /{phrase}/"))
    for phrase in case.absent:
        if re.search(phrase, text, re.IGNORECASE):
            problems.append(("weak", f"message says /{phrase}/"))
    if case.out_untouched and _files(ws.out):
        names = ", ".join(str(p.relative_to(ws.root)) for p in _files(ws.out)[:5])
        problems.append(("weak", f"files written for a refused input: {names}"))
    for relative in case.files:
        if not (ws.root / relative).exists():
            problems.append(("bad", f"{relative} was not written"))
    if (ws.root / "PWNED").exists():
        problems.append(("bad", "a YAML tag ran a command"))
    if case.signal is not None and outcome.signalled_at is None:
        problems.append(("bad", "the moment to send the signal never came (the command finished first)"))
    if case.check is not None:
        problems.extend(case.check(ws, outcome))
    return problems


def verdict(problems: list[tuple[str, str]]) -> str:
    severities = {severity for severity, _ in problems}
    return "bad" if "bad" in severities else "weak" if "weak" in severities else "good"



def run_case(case: Case, ws: Workspace) -> tuple[list[str], Outcome]:
    """Build ``case`` in ``ws`` and run its command; its arguments and outcome."""
    read_only = ws.root / case.read_only if case.read_only else None
    try:
        argv = [str(a) for a in case.build(ws)]
        if read_only is not None and os.geteuid() != 0:
            read_only.chmod(0o555)
        outcome = run_edgeopt(argv, ws.root, case.timeout, case.file_size_limit, read_only, command=ws.command,
                              env=ws.env, signal_plan=case.signal, daemons=bool(case.daemons))
    finally:
        ws.close()
        if read_only is not None:
            read_only.chmod(0o755)
    if read_only is not None and outcome.returncode == NO_MOUNT and "edgeopt" not in outcome.stderr:
        pytest.skip(f"root ignores file permissions, and cannot mount here: {outcome.stderr.strip()[:200]}")
    return argv, outcome


def check_case(case: Case, ws: Workspace) -> None:
    """Run ``case`` in ``ws`` and fail the test with every problem found (``HOSTILE_LOG=FILE``: one JSON line
    per case appended to FILE, the campaign's record)."""
    if case.root and os.geteuid() != 0:
        pytest.skip(f"needs root: {case.root}")
    argv, outcome = run_case(case, ws)
    problems = judge(case, ws, outcome)
    log = os.environ.get("HOSTILE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({
                "id": case.id, "category": case.category, "expected": case.code, "exit": outcome.returncode,
                "seconds": round(outcome.seconds, 2), "verdict": verdict(problems),
                "problems": [f"[{s}] {p}" for s, p in problems],
                "message": outcome.message[:600] if case.stream == "error" else
                (outcome.stdout if case.stream == "stdout" else outcome.stderr)[-600:],
                "stderr_tail": outcome.stderr[-600:],
            }) + "\n")
    if problems:
        shown = "\n".join(f"  [{severity}] {problem}" for severity, problem in problems)
        program = " ".join(ws.command) if ws.command is not None else "edgeopt"
        pytest.fail(f"{case.id} ({verdict(problems)}): {program} {' '.join(argv)}\n{shown}\n"
                    f"exit {outcome.returncode} after {outcome.seconds:.1f} s; stderr tail:\n{outcome.stderr[-1500:]}",
                    pytrace=False)
