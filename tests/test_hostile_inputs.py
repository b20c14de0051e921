"""Issue 12's hostile-input campaign, table-driven: every row of ``tests/hostile_cases.py`` through the real CLI.

Each case writes its hostile file(s) into a fresh folder, runs ``python -m edgeopt ...`` there as a real
subprocess (its own session, a time limit: a hang fails the row, and the command then gets SIGTERM, as a
cancelled CI job does, and SIGKILL 10 s later) and checks, besides the row's own
expectations (exit code; phrases of the one-line ``edgeopt: error: ...`` message, usually the file and
the field):

- no traceback and no ``internal error`` anywhere in the output;
- no process the command started is alive once it has exited (its children are recorded with psutil
  while it runs, and every process carrying the case's marker in its environment is looked for after);
- no hidden temporary file (``.*.tmp``, ``.*.job.json``, ``.*.result.json``) and no ``.edgeopt.lock`` of the
  command anywhere in the case's folder,
  nothing left in its ``TMPDIR``, and, for an input refused up front, no file in ``--out``.

A failing row says how bad it is: ``[bad]`` (traceback, internal error, exit 4 for an input problem, a hang,
a leftover temporary file or process, an accepted input) or ``[weak]`` (a refusal with the right exit class
whose message misses the file or the field, or that left files in ``--out``).  With ``HOSTILE_LOG=FILE``
each row also appends one JSON line (case, exit code, message, verdict) to FILE, the campaign's record.
"""

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

from tests import zoo
from tests.hostile_cases import CASES, PROFILE, Case, Workspace, fast_profile_text

MARKER = "EDGEOPT_HOSTILE_CASE"  # environment variable every process of a case inherits
HIDDEN_TEMP = re.compile(r"^\..*(\.tmp|\.job\.json|\.result\.json)$|^\..*\.tmp\b|^\.edgeopt\.lock$")
ERROR_PREFIX = "edgeopt: error: "
LONGEST_MESSAGE = 4000  # characters: an error that echoes a hostile file back is not one line
TERM_GRACE_S = 10.0  # a command that hangs gets SIGTERM, then SIGKILL this much later
GRACE_S = 1.0  # a killed worker is given this long to be reaped before it counts as having outlived the command
RUNTIME_TMP_FILES = {".ses"}  # onnxruntime's own marker, written into TMPDIR by ``import onnxruntime``


# ------------------------------------------------------------------------------------------- running a case


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


def _file_size_limit(limit: int | None) -> Callable[[], None] | None:
    if limit is None:
        return None

    def apply() -> None:  # in the child, before exec: its files (and its workers') stop growing at ``limit``
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
                read_only: Path | None = None) -> Outcome:
    """``python -m edgeopt ARGV`` in ``cwd`` with a private TMPDIR and a marker in its environment."""
    marker = uuid.uuid4().hex
    tmpdir = cwd / "TMPDIR"
    tmpdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEOPT_PROFILE_PATH", "GITHUB_STEP_SUMMARY")}
    env.update({MARKER: marker, "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1"})
    seen: dict[int, psutil.Process] = {}
    timed_out = stopped_by_term = False
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        command = [*_read_only_prefix(read_only), sys.executable, "-m", "edgeopt", *argv]
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_file_size_limit(file_size_limit))
        while process.poll() is None:
            if time.monotonic() - started > timeout:
                timed_out = True
                stopped_by_term = _stop(process)
                break
            try:
                for child in psutil.Process(process.pid).children(recursive=True):
                    seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.05)
        process.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    deadline = time.monotonic() + GRACE_S
    while True:
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
                   stopped_by_term, survivors)


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
    return problems


def verdict(problems: list[tuple[str, str]]) -> str:
    severities = {severity for severity, _ in problems}
    return "bad" if "bad" in severities else "weak" if "weak" in severities else "good"


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a callable, made lazily
    """A finished ``edgeopt run`` folder (tiny_conv, fp32, the fast profile) whose results the results rows
    copy and corrupt; made on first use."""
    made: dict[str, Path | str] = {}

    def get() -> Path:
        if not made:
            root = tmp_path_factory.mktemp("hostile-base")
            model = zoo.tiny_conv_model(root / "tiny_conv.onnx")
            profile = root / f"{PROFILE}.yaml"
            profile.write_text(fast_profile_text())
            done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile),
                                   "--variant", "fp32", "--out", str(root / "run")], cwd=root, capture_output=True,
                                  text=True, timeout=180)
            made["dir" if done.returncode == 0 else "error"] = (
                root / "run" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-2000:]}")
        if "error" in made:
            pytest.fail(f"the base run for the results rows failed: {made['error']}")
        return Path(made["dir"])

    return get


# -------------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, base_run) -> None:  # noqa: ANN001 - the fixture's callable
    ws = Workspace(tmp_path / "case", base_run)
    ws.root.mkdir()
    read_only = ws.root / case.read_only if case.read_only else None
    try:
        argv = [str(a) for a in case.build(ws)]
        if read_only is not None and os.geteuid() != 0:
            read_only.chmod(0o555)
        outcome = run_edgeopt(argv, ws.root, case.timeout, case.file_size_limit, read_only)
    finally:
        ws.close()
        if read_only is not None:
            read_only.chmod(0o755)
    if read_only is not None and outcome.returncode == NO_MOUNT and "edgeopt" not in outcome.stderr:
        pytest.skip(f"root ignores file permissions, and cannot mount here: {outcome.stderr.strip()[:200]}")
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
        pytest.fail(f"{case.id} ({verdict(problems)}): edgeopt {' '.join(argv)}\n{shown}\n"
                    f"exit {outcome.returncode} after {outcome.seconds:.1f} s; stderr tail:\n{outcome.stderr[-1500:]}",
                    pytrace=False)


def test_the_table_covers_the_campaign() -> None:
    """Every category of issue 12's campaign is in the table, about 70 rows, each id once."""
    categories = {c.category for c in CASES}
    assert categories >= {"model", "profile", "calibration", "eval", "results", "output", "options"}
    assert len({c.id for c in CASES}) == len(CASES)
    assert 60 <= len(CASES) <= 90
