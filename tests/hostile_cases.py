"""The hostile-input campaign of issue 12 as data: one :class:`Case` per bad input, each with the builder that
writes its file(s) and what ``edgeopt`` must do with it (``tests/test_hostile_inputs.py`` runs them).

A builder gets a :class:`Workspace` (a fresh folder per case, the command's cwd) and returns the command's
arguments after ``edgeopt``.  Every hostile file is generated here, with ``onnx.helper``, numpy and plain
text: nothing is downloaded or shipped.  Expected exit codes follow ``edgeopt/errors.py`` and README "Exit
codes": 2 usage or configuration (options, profile YAML), 3 input rejected (model, calibration, eval and
result files), 4 backend failure, 1 a budget failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests import profiles, zoo

if TYPE_CHECKING:
    from tests.hostile_runner import Outcome, SignalPlan

# ------------------------------------------------------------------------------------------------ settings

PROFILE = "fast"  # the profile every case measures on (a YAML file in the case's folder)
MEASUREMENT = f"fp32__{PROFILE}.json"  # the measurement document of the base run
CONV_SHAPE = zoo.CONV_INPUT_SHAPE  # (1, 3, 16, 16); tiny_conv has 10 classes
CLASSES = zoo.CONV_OUTPUT_SHAPE[1]


def fast_profile_text(name: str = PROFILE, *, description: str = "fast hostile-input test profile") -> str:
    """A profile that measures a tiny model in well under a second (stability rules off, any host) and
    judges the output budget a NaN-producing variant must fail."""
    text = profiles.profile_yaml(name, max_seconds=0.05, warmup_iterations=1, min_iterations=80,
                                 worker_timeout_s=60, description=description,
                                 budgets="  p95_ms: 1000\n  peak_rss_mb: 4000\n  min_cosine: 0.95")
    return text.replace("bench:\n", "bench:\n  warmup_seconds: 0\n", 1)


# ----------------------------------------------------------------------------------------------- workspace


class Workspace:
    """One case's folder: the cwd of the command, and everything its builder writes."""

    def __init__(self, root: Path, base_run: Callable[[], Path]) -> None:
        self.root = Path(root)
        self._base_run = base_run
        self.preserved: set[Path] = set()  # files the case itself keeps (not leftovers of the command)
        self.held: list[int] = []  # descriptors the case holds open while the command runs
        self.env: dict[str, str | None] = {}  # variables set (None: removed) for the command
        self.command: list[str] | None = None  # the program before the arguments (default python -m edgeopt)

    def close(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.held.clear()

    @property
    def out(self) -> Path:
        """The ``--out`` folder of commands that write one (checked afterwards: no file in it)."""
        return self.root / "out"

    @cached_property
    def model(self) -> Path:
        return zoo.tiny_conv_model(self.root / "tiny_conv.onnx")

    @cached_property
    def profile(self) -> Path:
        return self.text("fast.yaml", fast_profile_text())

    def path(self, relative: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def text(self, relative: str, content: str) -> Path:
        path = self.path(relative)
        path.write_text(content, encoding="utf-8")
        return path

    def data(self, relative: str, content: bytes) -> Path:
        path = self.path(relative)
        path.write_bytes(content)
        return path

    def run(self, *args: object, model: Path | None = None, variants: Sequence[str] = ("fp32",)) -> list[str]:
        """``run MODEL --profile fast.yaml --out out --variant fp32 ARGS``."""
        argv = ["run", str(model or self.model), "--profile", str(self.profile), "--out", str(self.out)]
        for variant in variants:
            argv += ["--variant", variant]
        return argv + [str(a) for a in args]

    # ---------------------------------------------------------------------------------- stored results

    def run_dir(self) -> Path:
        """A private copy of the base run folder (summary.json, measurements/, ...)."""
        target = self.root / "run"
        shutil.copytree(self._base_run(), target, symlinks=True)
        return target

    def measurement_doc(self) -> dict[str, Any]:
        return json.loads((self._base_run() / "measurements" / MEASUREMENT).read_text())

    def measurement(self, edit: Callable[[dict[str, Any]], object] | None = None, name: str = MEASUREMENT,
                    text: str | None = None) -> Path:
        """A copy of the base run's measurement document, edited by ``edit`` (or replaced by ``text``)."""
        if text is None:
            document = self.measurement_doc()
            if edit is not None:
                edit(document)
            text = json.dumps(document, indent=2)  # allow_nan: a hand edit can write NaN and Infinity
        return self.text(f"results/{name}", text)

    def good_measurement(self) -> Path:
        return self.measurement(name=f"base/{MEASUREMENT}")


# --------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One hostile input: how to make it, and what ``edgeopt`` must answer.

    ``code``: the expected exit status.  ``phrases``: regular expressions (case-insensitive unless they say
    ``(?-i:...)``) that must all match the one-line error (``edgeopt: error: ...``), or, when ``stream`` is
    ``stdout`` or ``stderr``, that output of a command that is expected to finish; the case's folder is cut
    out of the text first (its name repeats the case's id).  ``absent``: expressions that must not match it.
    ``out_untouched``: the ``--out`` folder holds no file afterwards (the input was refused before anything
    was written).  ``files``: paths (relative to the case's folder) that must exist afterwards.
    """

    id: str
    category: str
    build: Callable[[Workspace], list[str]]
    code: int
    phrases: tuple[str, ...]
    absent: tuple[str, ...] = ()
    stream: str = "error"
    out_untouched: bool = True
    files: tuple[str, ...] = ()
    read_only: str | None = None  # a folder (relative) made read-only for the command: chmod, or for root a
    # read-only bind mount in a mount namespace of the command's own
    file_size_limit: int | None = None  # RLIMIT_FSIZE of the command, in bytes: a disk that fills up
    timeout: float = 60.0
    note: str = ""
    signal: SignalPlan | None = None  # a signal sent while the command runs
    check: Callable[[Workspace, Outcome], list[tuple[str, str]]] | None = None  # more problems: (severity, what)
    root: str = ""  # why the case needs root (a device node, a mount); skipped for a user
    daemons: str = ""  # what the command starts that is meant to outlive it (a Ray node): not a leftover


CASES: list[Case] = []


def case(id: str, category: str, code: int, *phrases: str, **options: Any) -> Callable[[Callable[[Workspace],
                                                                                          list[str]]], Any]:
    """Register the decorated builder as one row of the table."""
    def register(build: Callable[[Workspace], list[str]]) -> Callable[[Workspace], list[str]]:
        CASES.append(Case(id, category, build, code, tuple(phrases), **options))
        return build
    return register


# ============================================================================================ model files


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", zoo.OPSET)], ir_version=zoo.IR_VERSION,
                              producer_name="edgeopt-hostile-tests")
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _retarget_external(model_path: Path, **entries: str) -> Path:
    """Rewrite the external-data entries (offset, length, location) of initializer 'w' of ``model_path``."""
    model = onnx.load(str(model_path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "w")
    for entry in tensor.external_data:
        if entry.key in entries:
            entry.value = entries[entry.key]
    model_path.write_bytes(model.SerializeToString())
    return model_path


@case("model-missing", "model", 3, r"nope\.onnx", r"not found")
def build_model_missing(ws: Workspace) -> list[str]:
    return ws.run(model=ws.root / "nope.onnx")


@case("model-empty", "model", 3, r"empty\.onnx", r"empty")
def build_model_empty(ws: Workspace) -> list[str]:
    return ws.run(model=ws.data("empty.onnx", b""))


@case("model-truncated", "model", 3, r"truncated\.onnx")
def build_model_truncated(ws: Workspace) -> list[str]:
    data = ws.model.read_bytes()
    return ws.run(model=ws.data("truncated.onnx", data[: len(data) // 2]))


@case("model-not-onnx-text", "model", 3, r"readme\.onnx")
def build_model_not_onnx_text(ws: Workspace) -> list[str]:
    return ws.run(model=ws.text("readme.onnx", "# not a model\nhello, world\n" * 20))


@case("model-git-lfs-pointer", "model", 3, r"lfs\.onnx", r"LFS")
def build_model_git_lfs_pointer(ws: Workspace) -> list[str]:
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 46137344\n"
    return ws.run(model=ws.text("lfs.onnx", pointer))


@case("model-no-graph", "model", 3, r"nograph\.onnx", r"graph")
def build_model_no_graph(ws: Workspace) -> list[str]:
    model = onnx.ModelProto(ir_version=zoo.IR_VERSION, producer_name="hostile")
    model.opset_import.append(helper.make_opsetid("", zoo.OPSET))
    return ws.run(model=ws.data("nograph.onnx", model.SerializeToString()))


@case("external-data-dotdot", "model", 3, r"model\.onnx", r"outside|\.\.")
def build_external_data_dotdot(ws: Workspace) -> list[str]:
    return ws.run(model=zoo.external_data_model(ws.root / "m", "../outside.bin"))


@case("external-data-absolute", "model", 3, r"model\.onnx", r"absolute")
def build_external_data_absolute(ws: Workspace) -> list[str]:
    return ws.run(model=zoo.external_data_model(ws.root / "m", str(ws.root / "elsewhere" / "w.bin")))


@case("external-data-symlink-out", "model", 3, r"model\.onnx", r"symlink")
def build_external_data_symlink_out(ws: Workspace) -> list[str]:
    secret = ws.data("elsewhere/w.bin", zoo.EXTERNAL_WEIGHT.tobytes())
    ws.path("m/w.bin").symlink_to(secret)
    return ws.run(model=zoo.external_data_model(ws.root / "m", "w.bin", write_data=False))


@case("external-data-offset-past-end", "model", 3, r"model\.onnx", r"'w'|w\.bin")
def build_external_data_offset_past_end(ws: Workspace) -> list[str]:
    return ws.run(model=_retarget_external(zoo.external_data_model(ws.root / "m", "w.bin"), offset="4096"))


@case("external-data-length-past-end", "model", 3, r"model\.onnx", r"'w'|w\.bin")
def build_external_data_length_past_end(ws: Workspace) -> list[str]:
    return ws.run(model=_retarget_external(zoo.external_data_model(ws.root / "m", "w.bin"), length="1048576"))


@case("external-data-hard-link", "model", 3, r"model\.onnx", r"link")
def build_external_data_hard_link(ws: Workspace) -> list[str]:
    secret = ws.data("elsewhere/w.bin", zoo.EXTERNAL_WEIGHT.tobytes())
    os.link(secret, ws.path("m/w.bin"))
    return ws.run(model=zoo.external_data_model(ws.root / "m", "w.bin", write_data=False))


@case("external-data-via-symlinked-model", "model", 3, r"w\.bin|model\.onnx", r"missing|not found|symlink",
      note="the model is a symlink into real/, where its data is missing; a decoy w.bin sits beside the link")
def build_external_data_via_symlinked_model(ws: Workspace) -> list[str]:
    real = zoo.external_data_model(ws.root / "real", "w.bin")
    (ws.root / "real" / "w.bin").unlink()
    ws.data("link/w.bin", (zoo.EXTERNAL_WEIGHT * 0 + 7).tobytes())  # the decoy the pre-check must not read
    ws.path("link/model.onnx").symlink_to(real)
    return ws.run(model=ws.root / "link" / "model.onnx")


@case("model-nan-weights", "model", 3, r"nan_weights\.onnx", r"(?-i:NaN)", r"w1")
def build_model_nan_weights(ws: Workspace) -> list[str]:
    path = zoo.tiny_mlp(ws.root / "nan_weights.onnx")
    model = onnx.load(str(path))
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == "w1":
            array = numpy_helper.to_array(tensor).copy()
            array[3, 5] = np.nan
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, "w1"))
    onnx.save(model, str(path))
    return ws.run(model=path)


@case("model-dynamic-dims-no-input", "model", 2, r"unresolved", r"--input")
def build_model_dynamic_dims_no_input(ws: Workspace) -> list[str]:
    return ws.run(model=zoo.dynamic_conv_model(ws.root / "dyn.onnx"))


@case("model-unsupported-op", "model", 4, r"custom\.onnx", r"NoSuchOp")
def build_model_unsupported_op(ws: Workspace) -> list[str]:
    return ws.run(model=zoo.custom_op_model(ws.root / "custom.onnx"))


@case("model-huge-declared-input", "model", 3, r"huge\.onnx", r"'?input'?", r"100000")
def build_model_huge_declared_input(ws: Workspace) -> list[str]:
    shape = [1, 3, 100000, 100000]
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"], name="relu")], "huge",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    return ws.run(model=_save(graph, ws.root / "huge.onnx"))


@case("model-huge-input-option", "model", 3, r"'?input'?", r"20000")
def build_model_huge_input_option(ws: Workspace) -> list[str]:
    return ws.run("--input", "input:1x3x20000x20000", model=zoo.dynamic_conv_model(ws.root / "dyn.onnx"))


@case("model-nan-outputs", "model", 1, r"(?-i:NaN)", stream="stdout", out_untouched=False,
      files=("out/summary.json", "out/summary.md"), timeout=120,
      note="Sqrt of the (random, half negative) input: every variant's outputs hold NaN; the run must record "
           "it, say so in the table and fail the output budget (issue 12, item 3)")
def build_model_nan_outputs(ws: Workspace) -> list[str]:
    nodes = [helper.make_node("Sqrt", ["input"], ["output"], name="sqrt")]
    graph = helper.make_graph(nodes, "nan_outputs",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16])])
    return ws.run(model=_save(graph, ws.root / "sqrt.onnx"), variants=("fp32", "fp16"))


def _forever(path: Path) -> Path:
    """A Loop of 2**62 iterations adding 1: ONNX Runtime runs it for ever."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"], name="inc")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "one")])
    inits = [numpy_helper.from_array(np.array(2**62, np.int64), "trip"),
             numpy_helper.from_array(np.array(True), "cond")]
    loop = helper.make_node("Loop", ["trip", "cond", "input"], ["output"], body=body, name="forever")
    graph = helper.make_graph([loop], "forever", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])], inits)
    return _save(graph, path)


@case("model-never-finishes", "model", 4, r"tim(e|ed) ?out", stream="stdout", out_untouched=False,
      files=("out/summary.json",), timeout=30,
      note="worker_timeout_s 3: the measurement fails as a timeout (exit 4), the worker and its files are gone")
def build_model_never_finishes(ws: Workspace) -> list[str]:
    text = fast_profile_text("slow").replace("worker_timeout_s: 60", "worker_timeout_s: 3")
    profile = ws.text("slow.yaml", text)
    return ["run", str(_forever(ws.root / "forever.onnx")), "--profile", str(profile), "--variant", "fp32",
            "--out", str(ws.out)]


@case("ab-candidate-missing", "model", 3, r"gone\.onnx")
def build_ab_candidate_missing(ws: Workspace) -> list[str]:
    return ["ab", str(ws.model), str(ws.root / "gone.onnx"), "--profile", str(ws.profile), "--out", str(ws.out)]


# =============================================================================================== profiles


def _profile(ws: Workspace, name: str, text: str) -> Path:
    return ws.text(f"{name}.yaml", text)


def _replaced(name: str, old: str, new: str) -> str:
    text = fast_profile_text(name)
    assert old in text, old
    return text.replace(old, new, 1)


def _billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@case("profile-alias-bomb", "profile", 2, r"bomb\.yaml", r"alias|anchor")
def build_profile_alias_bomb(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(_profile(ws, "bomb", fast_profile_text("bomb") + _billion_laughs()))]


@case("profile-nested-100k-sequences", "profile", 2, r"deep\.yaml", r"nest|deep")
def build_profile_nested_100k_sequences(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(_profile(ws, "deep", "name: deep\nx: " + "[" * 100_000 + "]" * 100_000 + "\n"))]


@case("profile-duplicate-key", "profile", 2, r"dup\.yaml", r"duplicate", r"p95_ms")
def build_profile_duplicate_key(ws: Workspace) -> list[str]:
    text = _replaced("dup", "  p95_ms: 1000", "  p95_ms: 1000\n  p95_ms: 5")
    return ["profiles", "show", str(_profile(ws, "dup", text))]


@case("profile-unknown-key", "profile", 2, r"unknown\.yaml", r"p97_ms")
def build_profile_unknown_key(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(_profile(ws, "unknown", _replaced("unknown", "  p95_ms: 1000", "  p97_ms: 3")))]


@case("profile-wrong-type", "profile", 2, r"wrongtype\.yaml", r"intra_op_threads")
def build_profile_wrong_type(ws: Workspace) -> list[str]:
    text = _replaced("wrongtype", "intra_op_threads: 1", 'intra_op_threads: "two"')
    return ["profiles", "show", str(_profile(ws, "wrongtype", text))]


@case("profile-out-of-range", "profile", 2, r"range\.yaml", r"target_ci_rel")
def build_profile_out_of_range(ws: Workspace) -> list[str]:
    text = _replaced("range", "bench:\n", "bench:\n  target_ci_rel: 5\n")
    return ["profiles", "show", str(_profile(ws, "range", text))]


@case("profile-10mb-description", "profile", 2, r"big\.yaml", r"description|MiB|MB|large")
def build_profile_10mb_description(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(_profile(ws, "big", fast_profile_text("big", description="x" * 10_000_000)))]


@case("profile-100kb-description", "profile", 2, r"long\.yaml", r"description")
def build_profile_100kb_description(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(_profile(ws, "long", fast_profile_text("long", description="y" * 100_000)))]


@case("profile-not-yaml", "profile", 2, r"garbage\.yaml")
def build_profile_not_yaml(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(ws.data("garbage.yaml", b"name: [unclosed\n\x00\x01\x02: {\n\t- :\n"))]


@case("profile-empty", "profile", 2, r"empty\.yaml")
def build_profile_empty(ws: Workspace) -> list[str]:
    return ["profiles", "show", str(ws.text("empty.yaml", ""))]


@case("profile-unknown-name", "profile", 2, r"no-such-profile")
def build_profile_unknown_name(ws: Workspace) -> list[str]:
    return ["run", str(ws.model), "--profile", "no-such-profile", "--out", str(ws.out)]


# ============================================================================================ calibration


def _samples(count: int = 20, shape: tuple[int, ...] = CONV_SHAPE, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def _manifest(extra: str = "", shape: tuple[int, ...] = CONV_SHAPE) -> str:
    dims = ", ".join(map(str, shape))
    return (f"name: hostile-calib\nkind: arrays\ndescription: hostile test data\nprovenance: generated by the "
            f"test\nlicence: CC0-1.0\ninputs:\n  - {{name: input, dtype: float32, shape: [{dims}]}}\n{extra}")


def _calibration(ws: Workspace, folder: str = "calib", *, samples: Sequence[np.ndarray] | None = None,
                 manifest: str | None = None) -> Path:
    directory = ws.path(f"{folder}/manifest.yaml").parent
    for index, sample in enumerate(_samples() if samples is None else samples):
        np.savez(directory / f"sample_{index:03d}.npz", input=sample)
    (directory / "manifest.yaml").write_text(_manifest() if manifest is None else manifest)
    return directory


def _outside_samples(ws: Workspace, folder: str = "outside") -> Path:
    directory = ws.path(f"{folder}/x").parent
    for index, sample in enumerate(_samples(seed=5)):
        np.savez(directory / f"secret_{index:03d}.npz", input=sample)
    return directory


@case("calib-files-pattern-dotdot", "calibration", 3, r"calib|manifest\.yaml", r"files")
def build_calib_files_pattern_dotdot(ws: Workspace) -> list[str]:
    _outside_samples(ws)
    return ws.run("--calibration", _calibration(ws, samples=[], manifest=_manifest("files: ../outside/*.npz\n")))


@case("calib-files-pattern-absolute", "calibration", 3, r"calib|manifest\.yaml", r"files")
def build_calib_files_pattern_absolute(ws: Workspace) -> list[str]:
    outside = _outside_samples(ws)
    calib = _calibration(ws, samples=[], manifest=_manifest(f"files: {outside}/*.npz\n"))
    return ws.run("--calibration", calib)


@case("calib-file-symlink-out", "calibration", 3, r"sample_019\.npz", r"symlink|outside")
def build_calib_file_symlink_out(ws: Workspace) -> list[str]:
    outside = _outside_samples(ws)
    calib = _calibration(ws, samples=_samples(19))
    (calib / "sample_019.npz").symlink_to(outside / "secret_000.npz")
    return ws.run("--calibration", calib)


@case("calib-subfolder-symlink-out", "calibration", 3, r"calib|sub", r"symlink|outside")
def build_calib_subfolder_symlink_out(ws: Workspace) -> list[str]:
    outside = _outside_samples(ws)
    calib = _calibration(ws, samples=[], manifest=_manifest("files: sub/*.npz\n"))
    (calib / "sub").symlink_to(outside, target_is_directory=True)
    return ws.run("--calibration", calib)


@case("calib-manifest-duplicate-key", "calibration", 3, r"manifest\.yaml", r"duplicate")
def build_calib_manifest_duplicate_key(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws, manifest=_manifest("name: second-name\n")))


@case("calib-manifest-alias-bomb", "calibration", 3, r"manifest\.yaml", r"alias|anchor")
def build_calib_manifest_alias_bomb(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws, manifest=_billion_laughs() + _manifest()))


@case("calib-manifest-nested-100k", "calibration", 3, r"manifest\.yaml", r"nest|deep")
def build_calib_manifest_nested_100k(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws, manifest="x: " + "[" * 100_000 + "]" * 100_000 + "\n"))


@case("calib-no-file-matches", "calibration", 3, r"calib", r"files")
def build_calib_no_file_matches(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws, manifest=_manifest("files: '*.nothing'\n")))


@case("calib-pickled-npy", "calibration", 3, r"sample_000\.npy", r"pickle")
def build_calib_pickled_npy(ws: Workspace) -> list[str]:
    calib = _calibration(ws, samples=[], manifest=_manifest("files: '*.npy'\n"))
    payload = np.empty(1, dtype=object)
    payload[0] = {"not": "an array"}
    np.save(calib / "sample_000.npy", payload, allow_pickle=True)
    return ws.run("--calibration", calib)


@case("calib-wrong-shape", "calibration", 3, r"sample_000\.npz", r"shape")
def build_calib_wrong_shape(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws, samples=_samples(shape=(1, 3, 8, 8))))


@case("calib-nan-data", "calibration", 3, r"sample_003\.npz", r"(?-i:NaN)")
def build_calib_nan_data(ws: Workspace) -> list[str]:
    samples = _samples()
    samples[3][0, 1, 2, 3] = np.nan
    return ws.run("--calibration", _calibration(ws, samples=samples))


@case("calib-truncated-npz", "calibration", 3, r"sample_002\.npz")
def build_calib_truncated_npz(ws: Workspace) -> list[str]:
    calib = _calibration(ws)
    data = (calib / "sample_002.npz").read_bytes()
    (calib / "sample_002.npz").write_bytes(data[: len(data) // 2])
    return ws.run("--calibration", calib)


# ================================================================================================ eval sets


def _eval(ws: Workspace, name: str = "eval.npz", *, count: int = 24, shape: tuple[int, ...] = CONV_SHAPE[1:],
          labels: np.ndarray | None = None, **arrays: np.ndarray) -> Path:
    rng = np.random.default_rng(9)
    images = rng.standard_normal((count, *shape)).astype(np.float32)
    if labels is None:
        labels = rng.integers(0, CLASSES, size=count)
    path = ws.path(name)
    np.savez(path, **{"images": images, "labels": labels, **arrays})
    return path


@case("eval-text-file", "eval", 3, r"notes\.npz", absent=(r"pickle",))
def build_eval_text_file(ws: Workspace) -> list[str]:
    return ws.run("--eval", ws.text("notes.npz", "image,label\ncat.png,3\ndog.png,5\n"))


@case("eval-labels-negative", "eval", 3, r"eval\.npz", r"label")
def build_eval_labels_negative(ws: Workspace) -> list[str]:
    return ws.run("--eval", _eval(ws, count=40, labels=-(np.arange(40) * 25 + 1)))  # -1 ... -976


@case("eval-labels-past-classes", "eval", 3, r"eval\.npz", r"label")
def build_eval_labels_past_classes(ws: Workspace) -> list[str]:
    return ws.run("--eval", _eval(ws, labels=np.arange(24) + CLASSES))


@case("eval-images-do-not-fit", "eval", 3, r"eval\.npz", r"input|shape|fit",
      note="issue 12 allows 2 or 3; like calibration samples of the wrong shape, an input file rejected (3)")
def build_eval_images_do_not_fit(ws: Workspace) -> list[str]:
    return ws.run("--eval", _eval(ws, shape=(3, 8, 8)))


@case("eval-nan-images", "eval", 3, r"eval\.npz", r"(?-i:NaN)")
def build_eval_nan_images(ws: Workspace) -> list[str]:
    path = _eval(ws)
    with np.load(path) as stored:
        images, labels = stored["images"].copy(), stored["labels"]
    images[5, 0, 0, 0] = np.nan
    np.savez(path, images=images, labels=labels)
    return ws.run("--eval", path)


@case("eval-labels-wrong-length", "eval", 3, r"eval\.npz", r"labels")
def build_eval_labels_wrong_length(ws: Workspace) -> list[str]:
    return ws.run("--eval", _eval(ws, labels=np.arange(7) % CLASSES))


# ========================================================================================== stored results


def _p95(document: dict[str, Any]) -> dict[str, Any]:
    return document["latency"]["summary_ms"]["percentiles"]["p95"]


def _set(document: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    for key in parents:
        document = document[key]
    document[last] = value


def _delete(document: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for key in parents:
        document = document[key]
    del document[last]


def _scaled_percentiles(document: dict[str, Any]) -> None:
    """Every stored percentile a tenth of what the raw samples say: a hand edit to pass a budget."""
    for item in document["latency"]["summary_ms"]["percentiles"].values():
        for key in ("value", "lower", "upper"):
            if item.get(key) is not None:
                item[key] = item[key] / 10


def _huge_measurement(ws: Workspace) -> Path:
    """A measurement document of about 600 MiB: every field valid, the commit a giant string."""
    document = ws.measurement_doc()
    document["commit"] = "@@HUGE@@"
    head, tail = json.dumps(document).split("@@HUGE@@")
    path = ws.path(f"results/huge/{MEASUREMENT}")
    with path.open("w", encoding="ascii") as handle:
        handle.write(head)
        chunk = "a" * (1 << 20)
        for _ in range(600):
            handle.write(chunk)
        handle.write(tail)
    return path


@case("gate-truncated-json", "results", 3, MEASUREMENT.replace(".", r"\."))
def build_gate_truncated_json(ws: Workspace) -> list[str]:
    text = json.dumps(ws.measurement_doc())
    return ["gate", str(ws.measurement(text=text[: len(text) // 2]))]


@case("gate-nan-p95", "results", 3, MEASUREMENT.replace(".", r"\."), r"modified|corrupt|(?-i:NaN)|finite")
def build_gate_nan_p95(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _p95(d).update(value=float("nan"))))]


@case("gate-infinite-p95-upper", "results", 3, MEASUREMENT.replace(".", r"\."), r"modified|corrupt|(?-i:Inf)|finite")
def build_gate_infinite_p95_upper(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _p95(d).update(upper=float("inf"))))]


@case("gate-empty-samples", "results", 3, MEASUREMENT.replace(".", r"\."), r"samples_ns|empty|no samples")
def build_gate_empty_samples(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _set(d, "latency.samples_ns", [])))]


@case("gate-percentiles-not-from-samples", "results", 3, MEASUREMENT.replace(".", r"\."), r"modified|corrupt")
def build_gate_percentiles_not_from_samples(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(_scaled_percentiles))]


@case("gate-missing-summary-n", "results", 3, MEASUREMENT.replace(".", r"\."), r"summary_ms|\bn\b")
def build_gate_missing_summary_n(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _delete(d, "latency.summary_ms.n")))]


@case("gate-missing-p95", "results", 3, MEASUREMENT.replace(".", r"\."), r"p95|percentiles")
def build_gate_missing_p95(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _delete(d, "latency.summary_ms.percentiles.p95")))]


@case("gate-wrong-kind", "results", 3, MEASUREMENT.replace(".", r"\."), r"kind")
def build_gate_wrong_kind(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _set(d, "kind", "run")))]


@case("gate-wrong-schema-version", "results", 3, MEASUREMENT.replace(".", r"\."), r"schema_version")
def build_gate_wrong_schema_version(ws: Workspace) -> list[str]:
    return ["gate", str(ws.measurement(lambda d: _set(d, "schema_version", 2)))]


@case("gate-nested-100k", "results", 3, r"deep\.json")
def build_gate_nested_100k(ws: Workspace) -> list[str]:
    return ["gate", str(ws.text("deep.json", '{"kind": "measurement", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"))]


@case("gate-huge-file", "results", 3, MEASUREMENT.replace(".", r"\."), r"MiB|MB|bytes|large|size",
      timeout=90, note="a 600 MiB document whose fields are all valid: only a size check refuses it")
def build_gate_huge_file(ws: Workspace) -> list[str]:
    return ["gate", str(_huge_measurement(ws))]


@case("report-truncated-summary", "results", 3, r"summary\.json", out_untouched=False)
def build_report_truncated_summary(ws: Workspace) -> list[str]:
    run = ws.run_dir()
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text[: len(text) // 2])
    return ["report", str(run)]


@case("report-nan-in-measurement", "results", 3, MEASUREMENT.replace(".", r"\."), r"modified|corrupt|(?-i:NaN)|finite",
      out_untouched=False)
def build_report_nan_in_measurement(ws: Workspace) -> list[str]:
    run = ws.run_dir()
    document = json.loads((run / "measurements" / MEASUREMENT).read_text())
    _p95(document)["value"] = float("nan")
    (run / "measurements" / MEASUREMENT).write_text(json.dumps(document))
    return ["report", str(run)]


@case("report-measurement-deleted", "results", 3, MEASUREMENT.replace(".", r"\."), out_untouched=False)
def build_report_measurement_deleted(ws: Workspace) -> list[str]:
    run = ws.run_dir()
    (run / "measurements" / MEASUREMENT).unlink()
    return ["report", str(run)]


@case("compare-nan-p95", "results", 3, MEASUREMENT.replace(".", r"\."), r"modified|corrupt|(?-i:NaN)|finite")
def build_compare_nan_p95(ws: Workspace) -> list[str]:
    return ["compare", str(ws.good_measurement()), str(ws.measurement(lambda d: _p95(d).update(value=float("nan"))))]


@case("compare-unreadable-binary", "results", 3, r"binary\.json")
def build_compare_unreadable_binary(ws: Workspace) -> list[str]:
    return ["compare", str(ws.good_measurement()), str(ws.data("binary.json", b"\xff\xfe\x00garbage" * 64))]


@case("rerun-nan-p95", "results", 3, MEASUREMENT.replace(".", r"\."), r"modified|corrupt|(?-i:NaN)|finite")
def build_rerun_nan_p95(ws: Workspace) -> list[str]:
    return ["rerun", str(ws.measurement(lambda d: _p95(d).update(value=float("nan"))))]


# =========================================================================================== output folder


@case("out-read-only", "output", 2, r"<case>/locked", read_only="locked", out_untouched=False)
def build_out_read_only(ws: Workspace) -> list[str]:
    locked = ws.path("locked/x").parent
    return ["run", str(ws.model), "--profile", str(ws.profile), "--variant", "fp32", "--out", str(locked)]


@case("report-into-read-only-folder", "output", 2, r"<case>/locked", read_only="locked", out_untouched=False)
def build_report_into_read_only_folder(ws: Workspace) -> list[str]:
    run = ws.run_dir()
    locked = ws.path("locked/x").parent
    return ["report", str(run), "--junit", str(locked / "junit.xml")]


@case("out-is-a-file", "output", 2, r"<case>/out\b", out_untouched=False)
def build_out_is_a_file(ws: Workspace) -> list[str]:
    ws.text("out", "I am a file\n")
    return ws.run()


@case("out-below-a-file", "output", 2, r"blocker", out_untouched=False)
def build_out_below_a_file(ws: Workspace) -> list[str]:
    blocker = ws.text("blocker", "I am a file\n")
    return ["run", str(ws.model), "--profile", str(ws.profile), "--variant", "fp32", "--out", str(blocker / "out")]


@case("out-stale-lock", "output", 0, r"stale", r"pid \d+", stream="stderr", out_untouched=False,
      files=("out/summary.json",), note="a lock file left by a killed command (its pid is dead, its lock free)")
def build_out_stale_lock(ws: Workspace) -> list[str]:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "command": "run", "started": "2026-01-01T00:00:00+00:00", "host": ""}
    ws.text("out/.edgeopt.lock", json.dumps(record) + "\n")
    return ws.run()


@case("out-busy-lock", "output", 2, r"<case>/out\b", r"another edgeopt command|busy|in use", r"pid \d+",
      out_untouched=False,
      note="the folder's lock is held (flock) by a live process, this test: the run stops at once, naming it")
def build_out_busy_lock(ws: Workspace) -> list[str]:
    import fcntl

    lock = ws.path("out/.edgeopt.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    ws.held.append(fd)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    record = {"pid": os.getpid(), "command": "run", "started": "2026-01-01T00:00:00+00:00", "host": ""}
    os.write(fd, (json.dumps(record) + "\n").encode())
    ws.preserved.add(lock)
    return ws.run()


@case("out-disk-full", "output", 2, r"File too large|No space|disk|full", file_size_limit=12 * 1024,
      out_untouched=False, note="RLIMIT_FSIZE 12 KiB stands for a full disk: the first measurement document "
      "(about 20 kB) cannot be written; issue 12 item 7 wants exit 2/3 naming the file, no partial file left")
def build_out_disk_full(ws: Workspace) -> list[str]:
    return ws.run(model=zoo.identity_add(ws.root / "identity.onnx"))


# ================================================================================================= options


@case("option-input-bad-syntax", "options", 2, r"--input")
def build_option_input_bad_syntax(ws: Workspace) -> list[str]:
    return ws.run("--input", "input:1x3x16x16:float32:extra")


@case("option-input-word-dim", "options", 2, r"three")
def build_option_input_word_dim(ws: Workspace) -> list[str]:
    return ws.run("--input", "input:1xthreex16x16")


@case("option-input-negative-dim", "options", 2, r"-16")
def build_option_input_negative_dim(ws: Workspace) -> list[str]:
    return ws.run("--input", "input:1x3x-16x16", model=zoo.dynamic_conv_model(ws.root / "dyn.onnx"))


@case("option-budget-negative", "options", 2, r"p95_ms")
def build_option_budget_negative(ws: Workspace) -> list[str]:
    return ws.run("--budget", "p95_ms=-5")


@case("option-max-calibration-samples-negative", "options", 2, r"max.calibration.samples|max_samples")
def build_option_max_calibration_samples_negative(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws), "--max-calibration-samples", "-3")


@case("option-min-calibration-samples-negative", "options", 2, r"min.calibration.samples|min_samples")
def build_option_min_calibration_samples_negative(ws: Workspace) -> list[str]:
    return ws.run("--calibration", _calibration(ws), "--min-calibration-samples", "-1")


@case("option-rerun-times-negative", "options", 2, r"--times")
def build_option_rerun_times_negative(ws: Workspace) -> list[str]:
    return ["rerun", str(ws.good_measurement()), "--times", "-1"]


@case("option-tune-max-drop-negative", "options", 2, r"max.drop")
def build_option_tune_max_drop_negative(ws: Workspace) -> list[str]:
    return ["tune", str(ws.model), "--calibration", str(_calibration(ws)), "--eval", str(_eval(ws)),
            "--profile", str(ws.profile), "--max-drop", "-1", "--out", str(ws.out)]


IDS = [c.id for c in CASES]
assert len(IDS) == len(set(IDS)), "case ids must be unique"
CATEGORIES = sorted({c.category for c in CASES})


def describe(case: Case) -> dict[str, Any]:
    """A row of the table as data (for a report of the campaign)."""
    return {"id": case.id, "category": case.category, "code": case.code, "phrases": list(case.phrases),
            "absent": list(case.absent), "stream": case.stream, "note": case.note}


__all__ = ["CASES", "CATEGORIES", "Case", "IDS", "MEASUREMENT", "PROFILE", "Workspace", "describe",
           "fast_profile_text"]
