"""CLI manners (issue 13): complete help, global options on either side of the subcommand, ``--version``,
output on a terminal that cannot show Unicode, ``--json`` with ``schema_version``, and one clear error when no
or several ONNX Runtime builds are installed."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt import errors
from edgeopt.cli.ascii_fallback import ERROR_HANDLER, install, transliterate
from edgeopt.cli.main import _parser
from edgeopt.cli.onnxruntime_flavour import flavour_problem, installed_flavours, missing_runtime_message
from edgeopt.cli.parsing import GLOBAL_OPTIONS
from tests import profiles, zoo

ROOT = Path(__file__).resolve().parent.parent
EDGEOPT = [sys.executable, "-m", "edgeopt"]


def edgeopt(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEOPT, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text of ``action`` as ``--help`` shows it (``%(default)s`` and friends expanded)."""
    return parser._get_formatter()._expand_help(action)


# ------------------------------------------------------------------------------------------------------ help


def help_problems(parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Walks every action of every parser: each has help; each optional value option says its default (a
    required one has none; a flag's default is off); no ``%`` is left unexpanded."""
    problems = []
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            flag = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                problems.append(f"edgeopt {name} {flag}: no help")
                continue
            text = expanded_help(parser, action)
            takes_value = action.option_strings and action.nargs != 0
            if takes_value and not action.required and "default" not in text:
                problems.append(f"edgeopt {name} {flag}: help does not say the default: {text!r}")
            if "%(" in text or "%%" in text:
                problems.append(f"edgeopt {name} {flag}: unexpanded % in {text!r}")
    return problems


def test_every_option_of_every_subcommand_has_help_showing_its_default() -> None:
    problems = help_problems({"": _parser(), **subcommands()})
    assert not problems, "\n".join(problems)


def test_the_walk_finds_options_without_help_or_default() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bare")
    parser.add_argument("--silent", default=3, help="how loud")
    parser.add_argument("--told", default=3, help="how loud (default: %(default)s)")
    parser.add_argument("--switch", action="store_true", help="a flag")
    parser.add_argument("thing", help="a positional")
    assert help_problems({"x": parser}) == ["edgeopt x --bare: no help",
                                            "edgeopt x --silent: help does not say the default: 'how loud'"]


def test_each_subcommand_has_a_description_and_an_example() -> None:
    for name, parser in subcommands().items():
        assert parser.description and len(parser.description.split()) >= 12, name
        assert "``" not in parser.description and "``" not in parser.format_help(), name
        assert parser.epilog and parser.epilog.startswith(f"example:\n  edgeopt {name} "), name
        assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, name


def test_top_level_help_lists_every_exit_code_of_edgeopt_errors() -> None:
    result = edgeopt("--help")
    assert result.returncode == 0, result.stderr
    head = result.stdout.split("\n\n")[1]  # the description: plain text, no reStructuredText
    assert "``" not in head and ":class:" not in head
    codes = [line.split()[0] for line in result.stdout.split("exit codes:\n")[1].splitlines() if line.strip()]
    for name, value in vars(errors).items():
        if name.startswith("EXIT_"):
            assert str(value) in codes, (name, codes)
    assert "128+N" in codes


# ------------------------------------------------------------------------------------------- global options


@pytest.mark.parametrize("argv, debug", [
    (["--debug", "profiles", "list"], True),
    (["profiles", "list", "--debug"], True),
    (["profiles", "--debug", "list"], True),
    (["profiles", "list"], False),
])
def test_global_options_before_or_after_the_subcommand(argv: list[str], debug: bool) -> None:
    assert _parser().parse_args(argv).debug is debug


def test_every_subcommand_takes_every_global_option() -> None:
    for name, parser in subcommands().items():
        flags = {flag for action in parser._actions for flag in action.option_strings}
        for option in GLOBAL_OPTIONS:
            assert set(option.flags) <= flags, (name, option.flags)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_in_either_position(tmp_path: Path, where: str) -> None:
    missing = tmp_path / "missing.json"
    args = ["--debug", "gate", missing] if where == "before" else ["gate", missing, "--debug"]
    result = edgeopt(*args)
    assert result.returncode == errors.EXIT_INPUT_REJECTED, result.stderr
    assert "Traceback" in result.stderr and "missing.json" in result.stderr
    plain = edgeopt("gate", missing)
    assert plain.returncode == errors.EXIT_INPUT_REJECTED and "Traceback" not in plain.stderr


# ------------------------------------------------------------------------------------------------- version


def test_version_has_one_source() -> None:
    from edgeopt import __version__

    found = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert found, "pyproject.toml: no version line"
    pyproject = found.group(1)
    assert __version__ == importlib.metadata.version("edgeopt") == pyproject, "reinstall: pip install -e ."
    assert pyproject not in (ROOT / "edgeopt" / "__init__.py").read_text()  # no second literal
    result = edgeopt("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"edgeopt {pyproject}"


def test_python_dash_m_edgeopt_is_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "edgeopt", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: edgeopt"), result.stderr


# ----------------------------------------------------------------------------------------- ASCII terminals


def test_transliteration_of_the_characters_edgeopt_writes() -> None:
    assert transliterate("export → variants, ±2 %, p95 ≤ 12 ms, Δ vs fp32, 3.2×, 5 µs, é…") == \
        "export -> variants, +/-2 %, p95 <= 12 ms, d vs fp32, 3.2x, 5 us, e..."
    install()
    assert "→ ±".encode("ascii", errors=ERROR_HANDLER) == b"-> +/-"
    assert "Δ≤ ok".encode("cp1252", errors=ERROR_HANDLER) == b"d<= ok"
    assert "± ×".encode("cp1252", errors=ERROR_HANDLER) == "± ×".encode("cp1252")  # cp1252 has them: unchanged
    with pytest.raises(UnicodeEncodeError):
        "→".encode("ascii")  # the handler is opt-in; strict stays strict


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["sweep", "--help"], ["profiles", "list"]])
def test_an_ascii_terminal_gets_ascii_output(args: list[str]) -> None:
    result = edgeopt(*args, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert "UnicodeEncodeError" not in result.stderr
    result.stdout.encode("ascii")
    if args == ["--help"]:
        assert "export -> variants" in result.stdout


@pytest.mark.slow
def test_an_ascii_terminal_gets_the_measurement_table(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny.onnx")
    profile = profiles.write_profile(tmp_path, "fast", max_seconds=0.3)
    result = edgeopt("profile", model, "--profile", profile, "--out", tmp_path / "m",
                     env={"PYTHONIOENCODING": "ascii"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "<= budget" in result.stdout and "d vs fp32" in result.stdout  # '≤' and 'Δ' in a UTF-8 terminal


# -------------------------------------------------------------------------------------------------- --json


TABLE_COMMANDS = {"inspect", "profiles", "profile", "gate", "run", "compare", "ab", "rerun", "sensitivity", "tune",
                  "sweep", "trt-check"}


def test_every_command_that_prints_a_table_takes_json() -> None:
    parsers = subcommands()
    for name in TABLE_COMMANDS:
        flags = {flag for action in parsers[name]._actions for flag in action.option_strings}
        assert "--json" in flags, name


def test_inspect_json_has_schema_version(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny.onnx")
    document = json.loads(edgeopt("inspect", model, "--json").stdout)
    assert document["schema_version"] == 1 and document["kind"] == "inspect"
    assert document["inputs"][0]["shape"] == [1, 3, 16, 16]


def test_profiles_json(tmp_path: Path) -> None:
    listed = json.loads(edgeopt("profiles", "list", "--json").stdout)
    assert listed["schema_version"] == 1 and listed["kind"] == "profiles"
    by_name = {p["name"]: p for p in listed["profiles"]}
    assert by_name["host-cpu"]["host_matches"] is True and "raspberry-pi-5" in by_name
    user = tmp_path / "hardware_profiles"
    user.mkdir()
    (user / "broken.yaml").write_text("name: broken\n")
    checked = edgeopt("profiles", "check", "--json", cwd=tmp_path)
    assert checked.returncode == errors.EXIT_USAGE
    document = json.loads(checked.stdout)
    assert document["kind"] == "profiles-check" and document["exit_code"] == errors.EXIT_USAGE
    (bad,) = [f for f in document["files"] if not f["valid"]]
    assert bad["path"].endswith("broken.yaml") and "required key is missing" in bad["error"]
    assert sum(f["valid"] for f in document["files"]) == len(list((ROOT / "hardware_profiles").glob("*.yaml")))
    shown = json.loads(edgeopt("profiles", "show", "host-cpu", "--json").stdout)
    assert shown["kind"] == "profile" and shown["profile"]["name"] == "host-cpu" and shown["host_matches"]


@pytest.mark.slow
def test_profile_gate_and_compare_json(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny.onnx")
    profile = profiles.write_profile(tmp_path, "fast", max_seconds=0.3)
    measured = edgeopt("profile", model, "--profile", profile, "--out", tmp_path / "m", "--json", timeout=300)
    assert measured.returncode == 0, measured.stderr
    document = json.loads(measured.stdout)  # the whole stdout is one document: no sentence, no table
    assert document["schema_version"] == 1 and document["kind"] == "profile-measurements"
    (stored,) = document["measurements"]
    assert document["rows"][0]["variant"] == "tiny" and document["gates"][0]["verdict"] == "pass"
    gated = json.loads(edgeopt("gate", stored, "--json").stdout)
    assert gated["kind"] == "gate" and gated["results"][0]["gate"]["verdict"] == "pass" and gated["exit_code"] == 0
    # a file against itself is still two bootstrap draws: a short run's p95 interval can straddle a 5% threshold
    # (exit 5, honestly), so the JSON shape is checked at thresholds no resampling of one file can cross
    wide = ("--threshold", "p50:50%", "--threshold", "p95:50%")
    compared = edgeopt("compare", stored, stored, *wide, "--json")
    assert compared.returncode == 0, compared.stdout
    comparison = json.loads(compared.stdout)
    assert comparison["schema_version"] == 1 and comparison["kind"] == "comparison"
    assert comparison["rows"] and comparison["exit_code"] == 0
    written = edgeopt("compare", stored, stored, *wide, "--json", tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text()) == comparison and "unchanged" in written.stdout


# ------------------------------------------------------------------------------------ ONNX Runtime flavour


def test_several_onnxruntime_builds_are_one_clear_problem() -> None:
    versions = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0"}

    def lookup(name: str) -> str:
        if name in versions:
            return versions[name]
        raise importlib.metadata.PackageNotFoundError(name)

    found = installed_flavours(lookup)
    assert found == versions
    problem = flavour_problem(found)
    assert problem is not None and "onnxruntime 1.32.0, onnxruntime-gpu 1.32.0" in problem
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in problem and "edgeopt[gpu]" in problem
    assert flavour_problem({"onnxruntime-gpu": "1.32.0"}) is None and flavour_problem({}) is None
    assert "edgeopt[cpu]" in missing_runtime_message({}, "No module named 'onnxruntime'")


def test_the_command_refuses_two_onnxruntime_builds_side_by_side(tmp_path: Path) -> None:
    """A second ONNX Runtime distribution (its metadata only) on the path: every command stops with exit 4."""
    if len(installed_flavours()) != 1:
        pytest.skip("needs exactly one ONNX Runtime build installed")
    other = "onnxruntime-gpu" if "onnxruntime" in installed_flavours() else "onnxruntime"
    info = tmp_path / f"{other.replace('-', '_')}-1.20.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {other}\nVersion: 1.20.0\n")
    result = edgeopt("profiles", "list", env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert result.returncode == errors.EXIT_BACKEND_FAILURE, result.stdout + result.stderr
    assert "several ONNX Runtime builds are installed" in result.stderr and f"{other} 1.20.0" in result.stderr
    assert result.stderr.count("\n") == 1


def test_no_onnxruntime_is_a_clear_error_naming_the_extras(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny.onnx")
    blocked = ("import sys; sys.modules['onnxruntime'] = None; from edgeopt.cli.main import main; "  # import fails
               f"sys.exit(main(['quantize', {str(model)!r}, '--out', {str(tmp_path / 'v')!r}, '--variant', 'fp32']))")
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert result.returncode == errors.EXIT_BACKEND_FAILURE, result.stderr
    assert result.stderr.startswith("edgeopt: error: ONNX Runtime is installed") and "edgeopt[cpu]" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
