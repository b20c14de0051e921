"""Rows of the second campaign: outputs (see tests/campaign2/table.py)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import stat
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from tests.campaign2.table import Workspace2, base_graph, case
from tests.hostile_runner import Outcome, SignalPlan, worker_running

Problems = list[tuple[str, str]]
Check = Callable[[Workspace2, Outcome], Problems]
DEVICE = "makes a private character device node (mknod)"
FULL = (1, 7)  # /dev/full's numbers: every write fails with ENOSPC
ZERO = (1, 5)  # /dev/zero's numbers: reads never end
STDOUT = "/proc/self/fd/1"  # what /dev/stdout points to; the rows make their own link to it
RAN = {"out_untouched": False, "files": ("out/summary.json",)}  # a row whose command runs and writes out/
REPORTS = ("out/summary.json", "out/summary.md", "out/report.html", "out/junit.xml", "out/results.csv")

# what the campaign's check_out.py looked for in each kind of report
HTML_MARKERS = ("<script>alert", "<img src=x onerror", "<svg onload", "onerror=alert(3)>")
MARKDOWN_MARKERS = ("<script>", "<img src=x", "<svg onload", "# Heading injected", "javascript:")
FORMULA_START = ("=", "+", "@", "\t", "\r")
NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-$|^-?inf$|^-?nan$", re.IGNORECASE)
ODD_NAME = re.compile(r"[<>\"|\x00-\x1f\x7f]|\.\.")
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

HOSTILE_OUTPUTS = ("logits", "<script>alert(1)</script>", '=HYPERLINK("http://evil.example","x")', "../../pwned",
                   "+cmd|' /C calc'!A0", "pipe|new\nline", "esc\x1b[31mred\x07\x01")
HOSTILE_GRAPH = '"><img src=x onerror=alert(3)>'
HOSTILE_INPUT = '"><svg onload=alert(2)>'
HTML_NAME = "<img src=x onerror=alert(1)>"
ABSOLUTE_FORMULA = "=HYPERLINK(\"http:evil.example\",'x').onnx"
RELATIVE_FORMULA = '=HYPERLINK("http:evil.example","x")+@SUM(1).onnx'
CONTROL_NAME = "ctl\x01\x1b[31m\x0b.onnx"

USER_MODULE = "rel2user"
USER_CODE = '''"""The user's code of the campaign: an endless calibration generator and sys.exit(0) in user code."""
import sys

import numpy as np


def forever():
    rng = np.random.default_rng(0)
    while True:
        yield {"input": rng.random((1, 1, 8, 8), dtype=np.float32)}


def exits():
    sys.exit(0)


def metric_exits(outputs, truth):
    sys.exit(0)
'''

# ------------------------------------------------------------------------------------------------- helpers

_BEFORE: dict[Path, tuple[float, set[str]]] = {}  # when the row's builder returned, and its files then
DELETED = re.compile(r"^#\d+ \(deleted\)$")  # realpath() of /proc/self/fd/1 when stdout is an unlinked file


def _made(ws: Workspace2) -> None:
    """Remember what the builder made, so a check can tell what the command wrote."""
    _BEFORE[ws.root] = (time.time(), set(_listing(ws.root)))


def _listing(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if (p.is_file() or p.is_symlink() or p.is_char_device() or p.is_fifo())
            and p.relative_to(root).parts[0] != "TMPDIR"]


def _written_outside(ws: Workspace2, *allowed: str) -> Problems:
    """Files the command made outside ``out/`` (and ``allowed``), and anything beside the row's folder."""
    made, before = _BEFORE.get(ws.root, (0.0, set()))
    places = ("out", *allowed)
    new = [p for p in _listing(ws.root) if p not in before and Path(p).parts[0] not in places]
    problems: Problems = [("bad", f"file written outside out/: {p!r}") for p in sorted(new)[:5]]
    beside = sorted(p.name for p in ws.root.parent.iterdir() if p != ws.root)
    if beside:
        problems.append(("bad", f"written beside the row's folder: {beside[:5]}"))
    for folder in {Path(tempfile.gettempdir()), ws.root / "TMPDIR"}:  # where the runner's stdout file lives
        for stray in folder.glob("#* (deleted)"):
            if DELETED.match(stray.name) and stray.is_file() and stray.stat().st_mtime >= made:
                problems.append(("bad", f"wrote {stray} (the unlinked file behind /proc/self/fd/1 taken for a "
                                        "path), removed now"))
                stray.unlink()
    return problems


def _csv_cells(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def _formula_cells(path: Path) -> list[str]:
    return [c for c in _csv_cells(path)
            if c[:1] in FORMULA_START or (c[:1] == "-" and not NUMBER.match(c))]


def _reports_clean(folder: Path) -> Problems:
    """The campaign's check_out.py, without a browser: raw HTML payloads, formula-leading CSV cells, JUnit XML that
    does not parse or holds raw control bytes, Markdown payloads, odd file or npz member names."""
    problems: Problems = []
    for page in sorted(folder.rglob("*.html")):
        raw = page.read_text(errors="replace")
        problems += [("bad", f"{page.name}: raw {m!r}") for m in HTML_MARKERS if m in raw]
        if RAW_CONTROL.search(raw):
            problems.append(("bad", f"{page.name}: a raw control character"))
    for table in sorted(folder.rglob("*.csv")):
        problems += [("bad", f"{table.name}: formula-leading cell {c[:60]!r}") for c in _formula_cells(table)[:3]]
    for document in sorted(folder.rglob("*.xml")):
        try:
            ET.parse(document)
        except ET.ParseError as error:
            problems.append(("bad", f"{document.name}: XML not well-formed: {error}"))
        if RAW_CONTROL.search(document.read_text(errors="replace")):
            problems.append(("bad", f"{document.name}: raw control bytes"))
    for page in sorted(folder.rglob("*.md")):
        raw = page.read_text(errors="replace")
        problems += [("bad", f"{page.name}: raw {m!r}") for m in MARKDOWN_MARKERS if m in raw]
    for path in folder.rglob("*"):
        if ODD_NAME.search(path.name):
            problems.append(("bad", f"odd file name in {folder.name}/: {str(path.relative_to(folder))!r}"))
        if path.suffix == ".npz" and path.is_file():
            members = zipfile.ZipFile(path).namelist()
            problems += [("bad", f"{path.name}: member {m!r} would leave the folder when unzipped")
                         for m in members if "/" in m or ".." in m]
    return problems


def _report_check(*allowed: str) -> Check:
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        return _reports_clean(ws.out) + _written_outside(ws, *allowed)
    return check


def _formula_kept_as_text(*tables: str) -> Check:
    """Each CSV of ``tables`` holds the formula-named model as text (a leading quote), and nothing runs."""
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        problems = _reports_clean(ws.out) + _written_outside(ws)
        for relative in tables:
            path = ws.root / relative
            if path.is_file() and not any(c.startswith("'=HYPERLINK(") for c in _csv_cells(path)):
                problems.append(("weak", f"{relative}: the model's cell is not there as quoted text"))
        return problems
    return check


def _still(kind: str, relative: str, rdev: tuple[int, int] | None = None) -> Check:
    """The special file ``relative`` is still a ``kind`` (char, fifo, link), and the command made no file outside
    out/ (no temporary beside it)."""
    tests = {"char": stat.S_ISCHR, "fifo": stat.S_ISFIFO, "link": stat.S_ISLNK}

    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        path = ws.root / relative
        problems: Problems = []
        try:
            mode = path.lstat()
        except FileNotFoundError:
            return [("bad", f"{relative} was removed")]
        if not tests[kind](mode.st_mode):
            problems.append(("bad", f"{relative} is no longer a {kind} (replaced by the command)"))
        elif rdev is not None and mode.st_rdev != os.makedev(*rdev):
            problems.append(("bad", f"{relative} has other device numbers now"))
        elif kind == "link" and os.readlink(path) != STDOUT:
            problems.append(("bad", f"{relative} points elsewhere now: {os.readlink(path)}"))
        return problems + _written_outside(ws)
    return check


def _both(*checks: Check) -> Check:
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        return [problem for one in checks for problem in one(ws, outcome)]
    return check


def _no_logging_error(ws: Workspace2, outcome: Outcome) -> Problems:
    return [("bad", "'--- Logging error ---' on stderr")] if "Logging error" in outcome.stderr else []


def _no_verdict(ws: Workspace2, outcome: Outcome) -> Problems:
    """A command stopped by the user's code leaves no verdict behind: no summary.json, no reports."""
    left = [name for name in ("summary.json", "junit.xml", "summary.md") if (ws.out / name).exists()]
    return [("bad", f"a verdict was written for a run that did not finish: out/{left[0]}")] if left else []


def _user_code(ws: Workspace2) -> None:
    ws.text(f"{USER_MODULE}.py", USER_CODE)
    ws.env["PYTHONPATH"] = str(ws.root)


def _seed_unchanged(relative: str) -> Check:
    """The stored measurement ``relative`` of the seed copy is byte for byte the session's seed's."""
    def check(ws: Workspace2, outcome: Outcome) -> Problems:
        original = ws.shared.make_seed() / Path(relative).relative_to("out")
        copy = ws.root / relative
        if not copy.is_file() or copy.read_bytes() != original.read_bytes():
            return [("bad", f"{relative} was changed or removed")]
        return []
    return check


def _no_scratch(ws: Workspace2, outcome: Outcome) -> Problems:
    """Nothing half-made is left by an interrupted command: no *.tmp, *.partial or .scratch-* anywhere."""
    left = [str(p.relative_to(ws.root)) for p in ws.root.rglob("*")
            if p.name.endswith((".tmp", ".partial")) or p.name.startswith(".scratch-")]
    return [("bad", f"left behind after the signal: {left[:5]}")] if left else []


def _no_ab_verdict(ws: Workspace2, outcome: Outcome) -> Problems:
    """An interrupted A/B writes no result: a verdict from half the interleaved blocks would mislead."""
    written = sorted(p.name for p in ws.out.glob("ab__*.json"))
    return [("bad", f"an interrupted ab wrote a result: out/{written[0]}")] if written else []


# ============================================================================ reports: hostile names, injection


@case("rep-output-names-hostile", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check(), timeout=120,
      note="output names holding HTML, a formula, ../../pwned, a newline and control characters: escaped in every "
           "report, never a file name or npz member")
def build_rep_output_names_hostile(ws: Workspace2) -> list[Any]:
    model = ws.save(base_graph(out_names=HOSTILE_OUTPUTS, name=HOSTILE_GRAPH), "evilout.onnx")
    argv = ws.run(model=model, variants=("fp32", "fp16"))
    _made(ws)
    return argv


@case("rep-input-name-hostile", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check(), timeout=120)
def build_rep_input_name_hostile(ws: Workspace2) -> list[Any]:
    argv = ws.run(model=ws.save(base_graph(in_name=HOSTILE_INPUT), "evilin.onnx"), variants=("fp32", "fp16"))
    _made(ws)
    return argv


@case("rep-model-filename-html", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check())
def build_rep_model_filename_html(ws: Workspace2) -> list[Any]:
    argv = ws.run(model=ws.save(base_graph(), f"{HTML_NAME}.onnx"))
    _made(ws)
    return argv


@case("rep-model-filename-csv-formula", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check(), note="an absolute path: the cell starts with '/'")
def build_rep_model_filename_csv_formula(ws: Workspace2) -> list[Any]:
    argv = ws.run(model=ws.save(base_graph(), ABSOLUTE_FORMULA))
    _made(ws)
    return argv


@case("rep-model-relative-formula-csv", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_formula_kept_as_text("out/results.csv"),
      note="a model given by a relative path starting with '=': its results.csv cell is quoted text ('=...)")
def build_rep_model_relative_formula_csv(ws: Workspace2) -> list[Any]:
    ws.save(base_graph(), RELATIVE_FORMULA)
    argv = ["run", RELATIVE_FORMULA, "--profile", str(ws.profile), "--out", "out", "--variant", "fp32"]
    _made(ws)
    return argv


@case("rep-report-samples-csv-formula", "reports", 0, r"wrote out/r2\.csv", r"wrote out/samples\.csv",
      stream="stdout", out_untouched=False, files=("out/r2.csv", "out/samples.csv", "out/r2.md"),
      check=_formula_kept_as_text("out/results.csv", "out/r2.csv"),
      note="report --csv/--samples-csv/--markdown of that run neutralise the cell too")
def build_rep_report_samples_csv_formula(ws: Workspace2) -> list[Any]:
    ws.save(base_graph(), RELATIVE_FORMULA)
    ws.profile  # noqa: B018 - writes fast.yaml
    _made(ws)
    return ws.shell(f"$EDGEOPT -q run '{RELATIVE_FORMULA}' --profile fast.yaml --out out --variant fp32 "
                    "&& $EDGEOPT report out --samples-csv out/samples.csv --csv out/r2.csv --markdown out/r2.md")


@case("rep-profile-name-html", "reports", 2, re.escape(HTML_NAME) + r"\.yaml", r"\bname\b",
      r"pattern|A-Za-z0-9", note="a profile named with HTML is refused, naming the file and the field")
def build_rep_profile_name_html(ws: Workspace2) -> list[Any]:
    profile = ws.profile_file(HTML_NAME, description='<script>alert("desc")</script> '
                                                     '=HYPERLINK("http://evil.example","x")')
    return ["run", ws.model, "--profile", profile, "--out", ws.out, "--variant", "fp32"]


def _profile_description_row(ws: Workspace2, stem: str, description: str) -> list[Any]:
    profile = ws.profile_file(stem, description=description)
    argv = ["run", ws.model, "--profile", profile, "--out", "out", "--variant", "fp32"]
    _made(ws)
    return argv


@case("rep-profile-desc-html", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check())
def build_rep_profile_desc_html(ws: Workspace2) -> list[Any]:
    return _profile_description_row(ws, "htmldesc", '"<script>alert(\\"desc\\")</script><img src=x onerror=alert(5)> '
                                                    '=HYPERLINK(\\"http://evil.example\\")"')


@case("rep-profile-desc-control-chars", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check())
def build_rep_profile_desc_control_chars(ws: Workspace2) -> list[Any]:
    return _profile_description_row(ws, "ctrl", '"bell\\x07 esc\\x1b[31m nul-ish\\x01 ]]> end"')


@case("rep-profile-desc-markdown", "reports", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check())
def build_rep_profile_desc_markdown(ws: Workspace2) -> list[Any]:
    return _profile_description_row(ws, "md", '"a | b\\n\\n# Heading injected\\n[click](javascript:alert(1))"')


@case("rep-model-filename-control-chars", "extra", 0, r"verdict: PASS", stream="stdout", out_untouched=False,
      files=REPORTS, check=_report_check(),
      note="\\x01 \\x1b \\x0b in the model's file name: junit.xml parses, no raw control byte in XML or HTML")
def build_rep_model_filename_control_chars(ws: Workspace2) -> list[Any]:
    ws.save(base_graph(), CONTROL_NAME)
    argv = ["run", f"./{CONTROL_NAME}", "--profile", str(ws.profile), "--out", "out", "--variant", "fp32"]
    _made(ws)
    return argv


# ============================================================================ special files where inputs are read


@case("ex-eval-fifo", "extra", 3, r"fifo\.npz", r"not a regular file", r"FIFO", absent=(r"not found",),
      check=_still("fifo", "data/fifo.npz"), timeout=30)
def build_ex_eval_fifo(ws: Workspace2) -> list[Any]:
    argv = ws.run("--eval", ws.fifo("data/fifo.npz"))
    _made(ws)
    return argv


@case("ex-calib-manifest-fifo", "extra", 3, r"calib/manifest\.yaml", r"not a regular file",
      check=_still("fifo", "calib/manifest.yaml"), timeout=30)
def build_ex_calib_manifest_fifo(ws: Workspace2) -> list[Any]:
    calib = ws.calibration()
    (calib / "manifest.yaml").unlink()
    ws.fifo("calib/manifest.yaml")
    argv = ws.run("--calibration", calib, "--min-calibration-samples", "4", variants=("int8-static-minmax",))
    _made(ws)
    return argv


@case("ex-profiles-list-fifo-in-path", "extra", 2, r"fifoprof/x\.yaml", r"not a regular file",
      check=_still("fifo", "fifoprof/x.yaml"), timeout=30)
def build_ex_profiles_list_fifo_in_path(ws: Workspace2) -> list[Any]:
    ws.env["EDGEOPT_PROFILE_PATH"] = str(ws.fifo("fifoprof/x.yaml").parent)
    _made(ws)
    return ["profiles", "list"]


@case("ex-profile-fifo-yaml", "extra", 2, r"fifoprof/x\.yaml", r"not a regular file",
      check=_still("fifo", "fifoprof/x.yaml"), timeout=30)
def build_ex_profile_fifo_yaml(ws: Workspace2) -> list[Any]:
    fifo = ws.fifo("fifoprof/x.yaml")
    argv = ["run", ws.model, "--profile", fifo, "--out", ws.out, "--variant", "fp32"]
    _made(ws)
    return argv


@case("ex-gate-fifo-json", "extra", 3, r"dev/fifo\.json", r"not a regular file", r"FIFO",
      check=_still("fifo", "dev/fifo.json"), timeout=30)
def build_ex_gate_fifo_json(ws: Workspace2) -> list[Any]:
    fifo = ws.fifo("dev/fifo.json")
    _made(ws)
    return ["gate", fifo]


@case("ex-compare-fifo-json", "extra", 3, r"dev/fifo\.json", r"not a regular file", r"FIFO",
      check=_still("fifo", "dev/fifo.json"), timeout=30)
def build_ex_compare_fifo_json(ws: Workspace2) -> list[Any]:
    fifo = ws.fifo("dev/fifo.json")
    _made(ws)
    return ["compare", fifo, fifo]


@case("ex-gate-devzero-json", "extra", 3, r"dev/zero\.json", r"not a regular file", r"character device",
      absent=(r"MiB",), check=_still("char", "dev/zero.json", ZERO), timeout=30, root=DEVICE,
      note="refused from the inode: no 256 MiB read first")
def build_ex_gate_devzero_json(ws: Workspace2) -> list[Any]:
    zero = ws.device("dev/zero.json", *ZERO)
    _made(ws)
    return ["gate", zero]


# ========================================================================== special files where outputs are written


@case("ex-report-html-devfull", "extra", 2, r"<case>/dev/full\b", r"No space left on device",
      check=_still("char", "dev/full", FULL), timeout=60, root=DEVICE,
      note="written in place into the device (which refuses it), never replaced by a regular file")
def build_ex_report_html_devfull(ws: Workspace2) -> list[Any]:
    run, full = ws.seed("run"), ws.device("dev/full", *FULL)
    _made(ws)
    return ["report", run, "--html", full]


def _html_on_stdout(ws: Workspace2, outcome: Outcome) -> Problems:
    text = outcome.stdout.strip()
    if not (text.startswith("<!DOCTYPE html>") and text.endswith("</html>")):
        return [("bad", f"stdout does not hold the whole page ({len(outcome.stdout)} characters)")]
    return []


@case("ex-report-html-stdout-symlink", "extra", 0, r"<!DOCTYPE html>", stream="stdout",
      check=_both(_still("link", "dev/stdout"), _html_on_stdout), timeout=60,
      note="--html LINK, LINK -> /proc/self/fd/1 (what /dev/stdout is): the page on stdout, the link kept")
def build_ex_report_html_stdout_symlink(ws: Workspace2) -> list[Any]:
    run, link = ws.seed("run"), ws.path("dev/stdout")
    link.symlink_to(STDOUT)
    _made(ws)
    return ["report", run, "--html", link]


@case("ex-report-csv-devfull", "extra", 2, r"<case>/dev/full\b", r"No space left on device",
      check=_still("char", "dev/full", FULL), timeout=60, root=DEVICE)
def build_ex_report_csv_devfull(ws: Workspace2) -> list[Any]:
    run, full = ws.seed("run"), ws.device("dev/full", *FULL)
    _made(ws)
    return ["report", run, "--csv", full]


@case("ex-log-file-devfull", "extra", 2, r"<case>/dev/full\b", r"No space left on device",
      absent=(r"<case>/out\b", r"cannot write the output"), out_untouched=False,
      check=_both(_still("char", "dev/full", FULL), _no_logging_error), timeout=60, root=DEVICE,
      note="--log-file into a full device: exit 2 naming the log file (not out/), no logging traceback")
def build_ex_log_file_devfull(ws: Workspace2) -> list[Any]:
    full = ws.device("dev/full", *FULL)
    argv = ["--log-file", full, *ws.run()]
    _made(ws)
    return argv


@case("ex-github-summary-devfull", "extra", 2, r"\$GITHUB_STEP_SUMMARY", r"<case>/dev/full\b",
      r"not a regular file|No space left", check=_still("char", "dev/full", FULL), timeout=60, root=DEVICE)
def build_ex_github_summary_devfull(ws: Workspace2) -> list[Any]:
    run = ws.seed("run")
    ws.env["GITHUB_STEP_SUMMARY"] = str(ws.device("dev/full", *FULL))
    _made(ws)
    return ["report", run, "--github-summary"]


@case("ex-github-summary-fifo", "extra", 2, r"\$GITHUB_STEP_SUMMARY", r"<case>/dev/fifo\b",
      r"not a regular file \(a FIFO\)", check=_still("fifo", "dev/fifo"), timeout=30)
def build_ex_github_summary_fifo(ws: Workspace2) -> list[Any]:
    run = ws.seed("run")
    ws.env["GITHUB_STEP_SUMMARY"] = str(ws.fifo("dev/fifo"))
    _made(ws)
    return ["report", run, "--github-summary"]


def _comparison_on_stdout(ws: Workspace2, outcome: Outcome) -> Problems:
    start, end = outcome.stdout.find("{"), outcome.stdout.find("\n}\n")
    try:
        document = json.loads(outcome.stdout[start:end + 2]) if start >= 0 and end > start else None
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or document.get("kind") != "comparison":
        return [("bad", "stdout does not hold the comparison's JSON document")]
    return []


@case("ex-compare-json-stdout-symlink", "extra", 0, r'"kind": "comparison"', r"compare: OK", stream="stdout",
      check=_both(_still("link", "dev/stdout"), _comparison_on_stdout), timeout=60,
      note="compare --json LINK (the --json /dev/stdout idiom): the JSON on stdout, the link kept")
def build_ex_compare_json_stdout_symlink(ws: Workspace2) -> list[Any]:
    run, link = ws.seed("run"), ws.path("dev/stdout")
    link.symlink_to(STDOUT)
    _made(ws)
    measurement = run / "measurements" / "fp32__fast.json"
    wide = ["--threshold", "p50:50%", "--threshold", "p95:50%"]  # one file twice: unchanged whatever its noise
    return ["compare", measurement, measurement, *wide, "--json", link]


# ================================================================================= a reader that goes away


@case("ex-broken-pipe-profiles-list", "extra", 141, stream="stderr", absent=(r"\S",),
      note="`profiles list | head -c 0`: the reader is gone before the first line; a quiet 141 (SIGPIPE's "
           "status), nothing on stderr")
def build_ex_broken_pipe_profiles_list(ws: Workspace2) -> list[Any]:
    return ws.shell("$EDGEOPT profiles list | head -c 0; exit ${PIPESTATUS[0]}")


@case("ex-broken-pipe-run-json", "extra", 141, stream="stderr",
      absent=(r"error", r"BrokenPipe", r"Exception", r"Traceback"), **RAN, timeout=60,
      note="`run --json | head -c 0`: the run finishes and keeps its folder; the JSON's reader is gone: quiet 141")
def build_ex_broken_pipe_run_json(ws: Workspace2) -> list[Any]:
    run = " ".join(f"'{a}'" for a in ws.run("--json"))
    return ws.shell(f"$EDGEOPT {run} | head -c 0; exit ${{PIPESTATUS[0]}}")


# ======================================================================== signals while a worker measures


def _runs(module: str) -> Callable[[Path, list[psutil.Process]], bool]:
    """A :class:`SignalPlan` moment: a process of the command runs ``python -m MODULE`` (ab's worker is
    ``edgeopt.measure.ab_worker``, which :func:`worker_running` does not look for)."""
    def when(root: Path, tree: list[psutil.Process]) -> bool:
        for process in tree:
            with contextlib.suppress(psutil.Error):
                if module in process.cmdline():
                    return True
        return False
    return when



@case("lc-sigint-ab-during-worker", "extra", 130, r"edgeopt: interrupted", stream="stderr", out_untouched=False,
      signal=SignalPlan(signal.SIGINT, _runs("edgeopt.measure.ab_worker"), delay=1.0),
      check=_both(_no_scratch, _no_ab_verdict), timeout=60,
      note="Ctrl-C (SIGINT to edgeopt alone) 1 s into ab's interleaved worker: 130, the worker gone, no temp file")
def build_lc_sigint_ab_during_worker(ws: Workspace2) -> list[Any]:
    candidate = ws.save(base_graph(seed=1), "candidate.onnx")
    return ["ab", ws.model, candidate, "--profile", ws.profile, "--max-seconds", "20", "--out", ws.out]


@case("lc-sigterm-rerun-during-worker", "extra", 143, r"stopped by SIGTERM", stream="stderr", out_untouched=False,
      signal=SignalPlan(signal.SIGTERM, worker_running, delay=0.5),
      check=_both(_no_scratch, _seed_unchanged("out/measurements/fp32__fast.json")), timeout=60,
      note="SIGTERM to edgeopt 0.5 s into rerun's worker: 143, the worker gone, the stored measurement untouched")
def build_lc_sigterm_rerun_during_worker(ws: Workspace2) -> list[Any]:
    ws.seed("out")
    return ["rerun", "out/measurements/fp32__fast.json", "--times", "5", "--out", "out/rr"]


# ================================================================================== user code (pkg.mod:fn)


def _capped_calibration(ws: Workspace2, outcome: Outcome) -> Problems:
    path = ws.out / "summary.json"
    count = (json.loads(path.read_text()).get("calibration") or {}).get("count") if path.is_file() else None
    return [] if count == 1000 else [("bad", f"calibration count {count}, not the default cap of 1000")]


@case("ex-user-code-calib-endless-generator", "extra", 0, r"rel2user:forever, 1000 samples", stream="stderr",
      **RAN, check=_capped_calibration, timeout=60,
      note="a calibration generator that never ends stops at the documented default cap (1000 samples)")
def build_ex_user_code_calib_endless_generator(ws: Workspace2) -> list[Any]:
    _user_code(ws)
    return ws.run("--calibration", f"{USER_MODULE}:forever", variants=("fp32", "int8-static-minmax"))


@case("ex-user-code-calib-sys-exit-0", "extra", 3, r"rel2user:exits\b", r"called sys\.exit\(0\)",
      r"rel2user\.py:\d+", check=_no_verdict, timeout=60)
def build_ex_user_code_calib_sys_exit_0(ws: Workspace2) -> list[Any]:
    _user_code(ws)
    return ws.run("--calibration", f"{USER_MODULE}:exits", variants=("int8-static-minmax",))


@case("ex-user-code-metric-sys-exit-0", "extra", 3, r"rel2user:metric_exits\b", r"metric called sys\.exit\(0\)",
      out_untouched=False, check=_no_verdict, timeout=60,
      note="measured, then the metric calls sys.exit(0): exit 3, no summary.json, no verdict")
def build_ex_user_code_metric_sys_exit_0(ws: Workspace2) -> list[Any]:
    _user_code(ws)
    return ws.run("--eval", ws.eval_set(), "--metric", f"{USER_MODULE}:metric_exits")
