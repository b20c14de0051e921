"""Parsers that bound their work, and hostile input files through the real ``edgeopt`` command.

Every hostile file is generated here.  Each case states the exit code, a phrase of the one-line message
(which names the file), and that no traceback or "internal error" is printed and nothing is written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.core.yaml_loader import MAX_BYTES, MAX_DEPTH, load_yaml
from edgeopt.errors import CalibrationError, ConfigError
from edgeopt.evaluate.robustness import value_space
from tests import profiles, zoo

EDGEOPT = [sys.executable, "-m", "edgeopt"]
GOOD_MANIFEST = ("name: tiny\nkind: arrays\ndescription: test set\nprovenance: built by the test\nlicence: CC0\n"
                 "inputs:\n  - {name: input, dtype: float32, shape: [1, 3, 16, 16]}\n")


def edgeopt(*args: str | Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEOPT, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """Exit ``code`` with one ``edgeopt: error:`` line holding every phrase; no traceback, no internal error."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("edgeopt:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgeopt: error: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------- hostile YAML

BOMB = "".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12)]
)  # 9**12 ≈ 2.8e11 strings once expanded


def profile_text(extra: str = "") -> str:
    return profiles.profile_yaml("t") + extra


HOSTILE_YAML: dict[str, tuple[str, str]] = {
    # case: (text of t.yaml, phrase of the refusal)
    "alias-bomb": ("name: t\ndescription: bomb\n" + BOMB, "anchors and aliases are not accepted"),
    "alias-only": (profile_text("extra: *missing\n"), "alias *missing refused"),
    "anchor-reused": (profile_text().replace("identity:\n", "identity: &id\n") + "other: *id\n", "anchor &id refused"),
    "merge-key": (profile_text("peak_rates:\n  <<: {fp32_gflops: 1}\n"), "merge key << refused"),
    "deep-flow": ("name: t\ndescription: deep\nx: " + "[" * 100_000 + "]" * 100_000 + "\n",
                  f"nested deeper than {MAX_DEPTH} levels"),
    "deep-json": ('{"name": "t", "x": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}\n",
                  f"nested deeper than {MAX_DEPTH} levels"),
    "huge-file": ("name: t\ndescription: " + "x" * (MAX_BYTES + 10) + "\n", "larger than 4 MiB"),
    "python-tag": (profile_text().replace("description: fast test profile",
                                          "description: !!python/object/apply:os.system ['true']"),
                   "no !!python or custom tags"),
    "two-documents": (profile_text() + "---\nname: t\n", "invalid YAML"),
    "long-description": (profile_text().replace("fast test profile", "d" * 10_000),
                         "description: at most 2000 characters, got 10000"),
    "unhashable-key": (profile_text("? [a, b]\n: 1\n"), "invalid YAML"),
    "control-characters": ("name: [unclosed\n\x00\x01\x02: {\n\t- :\n",
                           "line 2: invalid YAML: special characters are not allowed (character #x0000)"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_hostile_profile_yaml_is_refused_quickly_with_exit_2(tmp_path: Path, case: str) -> None:
    text, phrase = HOSTILE_YAML[case]
    path = tmp_path / "t.yaml"
    path.write_text(text)
    started = time.monotonic()
    result = edgeopt("profiles", "show", path)
    assert time.monotonic() - started < 60  # the bomb ran until killed at 120 s before
    assert_refused(result, 2, "t.yaml", phrase)


def test_loader_refuses_before_building_anything() -> None:
    """The bomb is refused at its first anchor: the loader never composes, let alone expands, the aliases."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: line 1: YAML anchor &l0 refused"):
        load_yaml(BOMB, source="bomb.yaml", error=ConfigError)
    assert time.monotonic() - started < 1.0
    with pytest.raises(CalibrationError, match=r"m\.yaml: line 1: nested deeper than 32 levels"):
        load_yaml("[" * 33 + "]" * 33, source="m.yaml", error=CalibrationError)
    assert load_yaml("[" * 31 + "]" * 31, source="m.yaml", error=CalibrationError).data is not None
    document = load_yaml("a:\n  b: [1, {c: 2}]\n", source="ok.yaml", error=ConfigError)
    assert document.data == {"a": {"b": [1, {"c": 2}]}}
    assert document.key_lines == {"a": 1, "a.b": 2, "a.b[1].c": 2}


# ------------------------------------------------------------------------------ hostile calibration

def _replaced(directory: Path, name: str, data: bytes) -> Path:
    """``directory`` after writing ``data`` over its file ``name``."""
    (directory / name).write_bytes(data)
    return directory


def write_set(directory: Path, manifest: str = GOOD_MANIFEST, count: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.yaml").write_text(manifest)
    rng = np.random.default_rng(0)
    for i in range(count):
        np.savez(directory / f"s{i}.npz", input=rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    return directory


def _escape_with_dotdot(tmp_path: Path) -> Path:
    write_set(tmp_path / "outside" / "data")
    return write_set(tmp_path / "a" / "b" / "set", GOOD_MANIFEST + "files: ../../../outside/data/*.npz\n", count=0)


def _escape_absolute(tmp_path: Path) -> Path:
    write_set(tmp_path / "outside")
    return write_set(tmp_path / "set", GOOD_MANIFEST + f"files: {tmp_path / 'outside'}/*.npz\n", count=0)


def _escape_by_symlink(tmp_path: Path) -> Path:
    outside = write_set(tmp_path / "outside")
    directory = write_set(tmp_path / "set")
    (directory / "s9.npz").symlink_to(outside / "s0.npz")
    return directory


def _escape_by_symlinked_folder(tmp_path: Path) -> Path:
    outside = write_set(tmp_path / "outside")
    directory = write_set(tmp_path / "set", GOOD_MANIFEST + "files: more/*.npz\n", count=0)
    (directory / "more").symlink_to(outside, target_is_directory=True)
    return directory


HOSTILE_CALIBRATION: dict[str, tuple[Callable[[Path], Path], str]] = {
    "dotdot-pattern": (_escape_with_dotdot, "climbs out of the calibration folder"),
    "absolute-pattern": (_escape_absolute, "is an absolute pattern"),
    "symlink-out": (_escape_by_symlink, "outside the calibration folder"),
    "symlinked-folder-out": (_escape_by_symlinked_folder, "outside the calibration folder"),
    "duplicate-key": (lambda p: write_set(p / "set", GOOD_MANIFEST + "licence: MIT\n"),
                      "licence: duplicate key (line 8, first at line 5)"),
    "alias-bomb": (lambda p: write_set(p / "set", GOOD_MANIFEST + BOMB), "anchors and aliases are not accepted"),
    "deep": (lambda p: write_set(p / "set", GOOD_MANIFEST + "x: " + "[" * 100_000 + "]" * 100_000 + "\n"),
             "nested deeper than 32 levels"),
    "text-as-npz": (lambda p: _replaced(write_set(p / "set"), "s1.npz", b"1,2,3\n"), "is a text file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CALIBRATION))
def test_hostile_calibration_folder_is_refused_with_exit_3(tmp_path: Path, case: str) -> None:
    make, phrase = HOSTILE_CALIBRATION[case]
    directory = make(tmp_path)
    model = zoo.tiny_conv_model(tmp_path / "m.onnx")
    profile = profiles.write_profile(tmp_path, "p")
    out = tmp_path / "out"
    result = edgeopt("run", model, "--profile", profile, "--calibration", directory, "--min-calibration-samples",
                     "1", "--variant", "fp32", "--out", out)
    line = assert_refused(result, 3, phrase)
    assert str(directory) in line, line
    assert not out.exists()  # refused before anything was written


def test_robustness_reads_the_manifest_with_the_bounded_loader(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    directory = write_set(tmp_path / "set", GOOD_MANIFEST + BOMB)
    with pytest.raises(CalibrationError, match=r"manifest\.yaml: line \d+: YAML anchor &l0 refused"):
        value_space(images, calibration=str(directory))
    (directory / "manifest.yaml").write_text(GOOD_MANIFEST.replace("kind: arrays", "kind: images").replace(
        "licence: CC0\n", "licence: CC0\npreprocess: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n"))
    space = value_space(images, calibration=str(directory))
    assert (space.low, space.high, space.mean, space.std) == (0.0, 1.0, (0.5,) * 3, (0.25,) * 3)
    (directory / "manifest.yaml").write_text(GOOD_MANIFEST.replace("kind: arrays", "kind: images").replace(
        "licence: CC0\n", "licence: CC0\npreprocess: {scale: 1.0}\n"))  # no mean/std: the eval values decide
    assert value_space(images, calibration=str(directory)).source.startswith("eval values all in [0, 1]")


# ---------------------------------------------------------------------------------- hostile models

def _external(tmp_path: Path, key: str, value: str) -> Path:
    path = zoo.external_data_model(tmp_path / "ext", "w.bin")
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == key:
            entry.value = value
    onnx.save(model, str(path))
    return path


def _hard_linked(tmp_path: Path) -> Path:
    path = zoo.external_data_model(tmp_path / "ext", "w.bin")
    os.link(tmp_path / "ext" / "w.bin", tmp_path / "w-copy.bin")
    return path


def _weights(tmp_path: Path, bad: float) -> Path:
    weight = np.ones((4, 4), np.float32)
    weight[1, 2] = bad
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(weight, "w")])
    path = tmp_path / "weights.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


HOSTILE_MODELS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "offset-past-end": (lambda p: _external(p, "offset", "4096"), "offset 4096 is past the end of the file"),
    "length-past-end": (lambda p: _external(p, "length", "4096"), "length 4096 runs past the end of the file"),
    "offset-not-int": (lambda p: _external(p, "offset", "x"), "offset 'x' is not an integer"),
    "hard-linked-data": (_hard_linked, "2 hard links; refused"),
    "nan-weight": (lambda p: _weights(p, float("nan")), "initializer 'w' holds 1 NaN value(s) of 16"),
    "inf-weight": (lambda p: _weights(p, float("inf")), "initializer 'w' holds 1 ±Inf value(s) of 16"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MODELS))
def test_hostile_model_file_is_refused_with_exit_3_naming_it(tmp_path: Path, case: str) -> None:
    make, phrase = HOSTILE_MODELS[case]
    path = make(tmp_path)
    assert_refused(edgeopt("inspect", path), 3, str(path), phrase)
    out = tmp_path / "out"
    result = edgeopt("run", path, "--profile", profiles.write_profile(tmp_path, "p"), "--variant", "fp32",
                     "--out", out)
    assert_refused(result, 3, str(path), phrase)
    assert not out.exists()


# ------------------------------------------------------------------------------ hostile eval sets

def _eval(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "eval.npz"
    np.savez(path, **arrays)
    return path


RNG = np.random.default_rng(0)
HOSTILE_EVAL: dict[str, tuple[Callable[[Path], Path], str]] = {
    "wrong-channels": (lambda p: _eval(p, images=RNG.random((4, 1, 16, 16), np.float32), labels=np.arange(4)),
                       "input 'input': samples of shape [1, 1, 16, 16] do not fit the model's [1, 3, 16, 16]"),
    "wrong-rank": (lambda p: _eval(p, images=RNG.random((4, 16), np.float32), labels=np.arange(4)),
                   "input 'input': samples of shape [16] do not fit"),
    "too-small": (lambda p: _eval(p, images=RNG.random((4, 3, 8, 8), np.float32), labels=np.arange(4)),
                  "(dimension 2 must be 16)"),
    "float-overflow": (lambda p: _eval(p, images=np.full((2, 3, 16, 16), 1e300), labels=np.arange(2)),
                       "values up to 1e+300 overflow the input's float32"),  # float64 cast to float32: inf
    "text-file": (lambda p: _replaced(p, "eval.npz", b"label,pixel\n1,2\n") / "eval.npz",
                  "is a text file (starts 'label,pixel 1,2'), not a .npz or .npy array file"),
    "empty-file": (lambda p: _replaced(p, "eval.npz", b"") / "eval.npz", "is empty (0 bytes)"),
    "pickle": (lambda p: _replaced(p, "eval.npz", b"\x80\x04\x95\x00") / "eval.npz", "is a Python pickle"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_EVAL))
def test_hostile_eval_set_is_refused_with_exit_3_naming_it(tmp_path: Path, case: str) -> None:
    make, phrase = HOSTILE_EVAL[case]
    path = make(tmp_path)
    model = zoo.tiny_conv_model(tmp_path / "m.onnx")
    out = tmp_path / "out"
    result = edgeopt("run", model, "--profile", profiles.write_profile(tmp_path, "p"), "--eval", path,
                     "--variant", "fp32", "--out", out)
    line = assert_refused(result, 3, "eval.npz", phrase)
    assert "pickled" not in line
    assert not out.exists()


# ----------------------------------------------------------------------------------- input size cap

def test_an_input_over_the_size_cap_is_exit_3_naming_it_not_a_memory_error(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 100000, 100000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 100000, 100000])])
    model = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(model))
    result = edgeopt("run", model, "--profile", profiles.write_profile(tmp_path, "p"), "--variant", "fp32",
                     "--out", tmp_path / "out")
    assert_refused(result, 3, "input 'x' of shape [1, 3, 100000, 100000] float32 would take 111.8 GiB",
                   "bench.max_input_mb")
    assert "MemoryError" not in result.stderr


# --------------------------------------------------------------------------------- compare wording

def test_compare_says_and_does_exit_3_for_an_unreadable_results_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert_refused(edgeopt("compare", bad, bad), 3, "bad.json")
    help_text = edgeopt("compare", "--help").stdout
    assert "3 a results file or folder that is missing, unreadable, corrupt" in " ".join(help_text.split())
