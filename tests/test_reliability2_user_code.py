"""Issue 23 (reliability campaign 2): user code, calibration generators, declared dtypes, odd file names and
special files, each through the real CLI (``python -m edgeopt ...`` in a fresh folder, a private TMPDIR).

Each row builds its files (the user's code is a small module on PYTHONPATH in the case's folder), runs the
command and checks the exit code, a phrase of the one-line ``edgeopt: error:`` message, no traceback, no
process that outlives the command and no temporary file left (``tests.hostile_runner.run_edgeopt``).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeopt.errors import CalibrationError, ConfigError
from edgeopt.models import calibration
from edgeopt.models.calibration import ENTRY_POINT_MAX_SAMPLES, load_calibration
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.inputs import resolve_shapes
from edgeopt.models.modelref import parse_inputs
from tests import zoo
from tests.hostile_cases import fast_profile_text
from tests.hostile_runner import HIDDEN_TEMP, RUNTIME_TMP_FILES, Outcome, run_edgeopt

SHAPE = zoo.CONV_INPUT_SHAPE  # tiny_conv's one input, 'input', float32
USER_MODULE = "rel2user"
USER_CODE = f'''
import sys
import time

import numpy as np

SHAPE = {SHAPE!r}


def sample(rng):
    return {{"input": rng.random(SHAPE, dtype=np.float32)}}


def forever():
    rng = np.random.default_rng(0)
    while True:
        yield sample(rng)


def three():
    rng = np.random.default_rng(0)
    for _ in range(3):
        yield sample(rng)


def slowly_forever():
    rng = np.random.default_rng(0)
    while True:
        open("started", "w").close()
        time.sleep(0.05)
        yield sample(rng)


def exits():
    sys.exit(0)


def exits_with_text():
    sys.exit("usage: helper [-h]")


def exits_while_yielding():
    rng = np.random.default_rng(0)
    yield sample(rng)
    sys.exit(0)


def raises_generator_exit():
    raise GeneratorExit


def ignores_close():
    rng = np.random.default_rng(0)
    try:
        while True:
            yield sample(rng)
    finally:
        yield sample(rng)


def metric_exits(outputs, truth):
    sys.exit(0)
'''


@dataclass(frozen=True)
class Row:
    """One case: the CLI arguments after ``edgeopt`` ({model}, {profile} filled in), what to build first, the
    exit code and the phrases its message must hold."""

    id: str
    argv: tuple[str, ...]
    code: int
    phrases: tuple[str, ...]
    build: Callable[[Path], None] = lambda folder: None


def quantize(calibration_source: str, *extra: str) -> tuple[str, ...]:
    return ("quantize", "{model}", "--variant", "int8-static-minmax", "--out", "q", "--calibration",
            calibration_source, *extra)


def run(*extra: str) -> tuple[str, ...]:
    return ("run", "{model}", "--profile", "{profile}", "--out", "out", "--variant", "fp32", *extra)


def eval_file(folder: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(folder / "eval.npz", images=rng.random((8, *SHAPE[1:]), dtype=np.float32), labels=np.arange(8) % 10)


def importing_exits(folder: Path) -> None:
    (folder / "exits_on_import.py").write_text("import sys\nsys.exit(2)\n\ndef samples():\n    return []\n")


def calibration_folder(special: Callable[[Path], None]) -> Callable[[Path], None]:
    """A kind-arrays folder of 19 good samples plus ``s19.npz`` made by ``special`` (a FIFO, a device)."""
    def build(folder: Path) -> None:
        directory = folder / "cal"
        directory.mkdir()
        document = {"name": "tiny", "kind": "arrays", "description": "test set", "provenance": "the test",
                    "licence": "CC0", "inputs": [{"name": "input", "dtype": "float32", "shape": list(SHAPE)}]}
        (directory / "manifest.yaml").write_text(yaml.safe_dump(document))
        rng = np.random.default_rng(0)
        for i in range(19):
            np.savez(directory / f"s{i:02d}.npz", input=rng.random(SHAPE, dtype=np.float32))
        special(directory / "s19.npz")
    return build


def char_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a private character device (os.mknod) needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers, at a private path


def fifo_eval(folder: Path) -> None:
    os.mkfifo(folder / "eval.npz")


ROWS = [
    Row("calibration-sys-exit-0", quantize(f"{USER_MODULE}:exits"), 3,
        (f"{USER_MODULE}:exits: your calibration entry point called sys.exit(0)", "rel2user.py:", "in exits")),
    Row("calibration-sys-exit-text", quantize(f"{USER_MODULE}:exits_with_text"), 3,
        ("called sys.exit('usage: helper [-h]')",)),
    Row("calibration-sys-exit-while-yielding", quantize(f"{USER_MODULE}:exits_while_yielding"), 3,
        ("your calibration entry point called sys.exit(0)", "in exits_while_yielding")),
    Row("calibration-raises-generator-exit", quantize(f"{USER_MODULE}:raises_generator_exit"), 3,
        ("your calibration entry point raised GeneratorExit",)),
    Row("calibration-ignores-close", quantize(f"{USER_MODULE}:ignores_close", "--max-calibration-samples", "2",
                                              "--min-calibration-samples", "1"), 3,
        ("raised RuntimeError: generator ignored GeneratorExit",)),
    Row("calibration-module-exits-on-import", quantize("exits_on_import:samples"), 3,
        ("exits_on_import:samples: importing module 'exits_on_import' called sys.exit(2)",), importing_exits),
    Row("metric-sys-exit-0", run("--eval", "eval.npz", "--metric", f"{USER_MODULE}:metric_exits"), 3,
        (f"{USER_MODULE}:metric_exits: your metric called sys.exit(0)", "in metric_exits"), eval_file),
    Row("input-dtype-differs", run("--input", "input:" + "x".join(map(str, SHAPE)) + ":complex128"), 2,
        ("--input input: dtype complex128 differs from the float32", "give float32")),
    Row("calibration-fifo-sample", quantize("cal", "--min-calibration-samples", "4"), 3,
        ("s19.npz: not a regular file (a FIFO)",), calibration_folder(os.mkfifo)),
    Row("calibration-char-device-sample", quantize("cal", "--min-calibration-samples", "4"), 3,
        ("s19.npz: not a regular file (a character device)",), calibration_folder(char_device)),
    Row("eval-fifo", run("--eval", "eval.npz"), 3, ("eval.npz: not a regular file (a FIFO)",), fifo_eval),
]


@pytest.fixture
def case_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the tiny model, the fast profile and the user's module (on PYTHONPATH)."""
    zoo.tiny_conv_model(tmp_path / "model.onnx")
    (tmp_path / "fast.yaml").write_text(fast_profile_text())
    (tmp_path / f"{USER_MODULE}.py").write_text(USER_CODE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def edgeopt(folder: Path, argv: tuple[str, ...], model: str = "model.onnx", timeout: float = 120) -> Outcome:
    filled = [a.format(model=model, profile="fast.yaml") for a in argv]
    return run_edgeopt(filled, folder, timeout)


def assert_clean(folder: Path, outcome: Outcome) -> None:
    """No traceback, no internal error, no process alive after the command, no temporary file left."""
    text = outcome.stdout + outcome.stderr
    assert not outcome.timed_out, f"{outcome.argv}: hung ({outcome.seconds:.0f} s)"
    assert "Traceback" not in text and "internal error" not in text, text
    assert not outcome.survivors, outcome.survivors
    hidden = [p for p in folder.rglob("*") if HIDDEN_TEMP.match(p.name)]
    assert not hidden, hidden
    left = [p.name for p in (folder / "TMPDIR").iterdir() if p.name not in RUNTIME_TMP_FILES]
    assert not left, left


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_refused_with_one_line(row: Row, case_folder: Path) -> None:
    row.build(case_folder)
    outcome = edgeopt(case_folder, row.argv)
    assert outcome.returncode == row.code, outcome.stdout + outcome.stderr
    for phrase in row.phrases:
        assert phrase in outcome.message, outcome.message
    assert_clean(case_folder, outcome)
    assert not (case_folder / "out" / "summary.json").exists()  # no verdict from a run that did not finish


def test_an_endless_generator_stops_at_the_default_cap(case_folder: Path) -> None:
    outcome = edgeopt(case_folder, quantize(f"{USER_MODULE}:forever"), timeout=90)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert (f"read the first {ENTRY_POINT_MAX_SAMPLES} samples of {USER_MODULE}:forever, which yields more: the cap "
            f"is edgeopt's default cap for an entry point") in outcome.stderr
    assert (case_folder / "q" / "int8-static-minmax.onnx").is_file()
    assert_clean(case_folder, outcome)


@pytest.fixture
def user_module(case_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's module importable in this process (forgotten afterwards), the case folder the cwd."""
    monkeypatch.syspath_prepend(str(case_folder))
    monkeypatch.delitem(sys.modules, USER_MODULE, raising=False)
    monkeypatch.chdir(case_folder)
    return case_folder


def test_an_endless_generator_keeps_the_first_samples(user_module: Path) -> None:
    taken = load_calibration(f"{USER_MODULE}:forever", min_samples=1)
    capped = load_calibration(f"{USER_MODULE}:forever", min_samples=1, max_samples=7)
    assert taken.count == ENTRY_POINT_MAX_SAMPLES
    assert capped.count == 7
    assert capped.content_hash == taken.take(7).content_hash
    assert taken.metadata["capped_at"] == ENTRY_POINT_MAX_SAMPLES and "default cap" in taken.metadata["cap_source"]
    assert capped.metadata["cap_source"] == "--max-calibration-samples"
    assert "capped_at" not in load_calibration(f"{USER_MODULE}:three", min_samples=1).metadata  # it ended itself


def test_a_slow_endless_generator_meets_the_time_cap(user_module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration, "ENTRY_POINT_TIME_LIMIT_S", 0.3)
    with pytest.raises(CalibrationError, match=r"rel2user:slowly_forever: still yielding samples after 0.3 s"):
        load_calibration(f"{USER_MODULE}:slowly_forever", min_samples=1, max_samples=10_000)


def test_sigterm_stops_an_endless_generator_within_5_s(case_folder: Path) -> None:
    argv = [a.format(model="model.onnx") for a in quantize(f"{USER_MODULE}:slowly_forever",
                                                           "--max-calibration-samples", "1000000")]
    (case_folder / "TMPDIR").mkdir()
    env = {**os.environ, "TMPDIR": str(case_folder / "TMPDIR")}
    process = subprocess.Popen([sys.executable, "-m", "edgeopt", *argv], cwd=case_folder, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (case_folder / "started").exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the generator's loop
        sent = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=5)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert took < 5, took
    assert b"stopped by SIGTERM" in err, err


def test_a_path_that_is_not_utf8(case_folder: Path) -> None:
    name = os.fsdecode(b"model-\xff.onnx")
    try:
        os.rename(case_folder / "model.onnx", case_folder / name)
    except (OSError, UnicodeEncodeError) as error:
        pytest.skip(f"this file system refuses a non-UTF-8 name: {error}")
    outcome = edgeopt(case_folder, run(), model=name)
    assert outcome.returncode == 3, outcome.stdout + outcome.stderr
    assert "model-\\xff.onnx: the file's path is not valid UTF-8" in outcome.message, outcome.message
    assert "incompatible" not in outcome.message
    assert_clean(case_folder, outcome)


@pytest.mark.parametrize(("text", "model_dtype"), [("input:1x3x16x16", "float32"), ("ids:1x8", "int64"),
                                                   ("input:1x3x16x16:float32", "float32")])
def test_a_dtype_left_out_or_equal_is_the_models(text: str, model_dtype: str) -> None:
    given = parse_inputs([text]).concrete()
    declared = [InputSpec(given[0].name, given[0].shape, model_dtype)]
    assert [r.dtype for r in resolve_shapes(declared, given=given)] == [model_dtype]


def test_a_written_dtype_that_differs_is_refused() -> None:
    given = parse_inputs(["ids:1x8:float16"]).concrete()
    with pytest.raises(ConfigError, match=r"--input ids: dtype float16 differs from the int64 m.onnx declares"):
        resolve_shapes([InputSpec("ids", (1, 8), "int64")], given=given, where="m.onnx")
