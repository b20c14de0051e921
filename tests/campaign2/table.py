"""The workspace every row of the second campaign builds in, and the row registry.

A row is a :class:`tests.hostile_cases.Case` (exit code, message phrases, a signal to send, more checks)
registered with :func:`case`; its builder gets a :class:`Workspace2` and returns the command's arguments.  The
workspace makes the campaign's files on demand: the small image model the campaign ran on (``good.onnx``:
Flatten-MatMul-Add, ``input`` [1, 1, 8, 8] -> ``logits`` [1, 10]), calibration folders, an eval set, profiles,
a finished *seed* run (fp32 and int8-static-minmax) made once per session and copied per row, and, for the
lab rows, a Ray head started once.  Nothing is downloaded; device nodes are private ones under the row's
folder (never ``/dev``), made only as root.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.hostile_cases import Case, Workspace

OPSETS = [helper.make_opsetid("", 17)]
INPUT_SHAPE = (1, 1, 8, 8)
PROFILE = "fast"
MANIFEST = ("kind: arrays\nname: test\ndescription: test set\nprovenance: generated\nlicence: CC0\n"
            "inputs:\n- name: input\n  dtype: float32\n  shape: [1, 1, 8, 8]\n")
CALM = ("stability: {max_cv: null, max_drift_rel: null, max_outlier_fraction: null, max_load_avg_per_core: null, "
        "fail_on_throttling: false}\n")


def profile_text(name: str = PROFILE, *, description: str = "rel2 test profile",
                 budgets: str = "  p95_ms: 1000\n  peak_rss_mb: 4000\n", bench: str = "") -> str:
    """The campaign's profile: any host, one thread, 0.05 s per row, stability rules off."""
    return (f"name: {name}\ndescription: {description}\nidentity:\n  any_host: true\nruntime:\n  intra_op_threads: 1\n"
            f"  native_precisions: [fp32, int8]\nbench:\n  warmup_iterations: 2\n  warmup_seconds: 0\n"
            f"  min_iterations: 80\n  max_seconds: 0.05\n  worker_timeout_s: 120\n{bench}budgets:\n{budgets}" + CALM)


def model_proto(graph: onnx.GraphProto, opsets: list[onnx.OperatorSetIdProto] | None = None) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=opsets or OPSETS, producer_name="rel2")
    model.ir_version = 9
    return model


def base_graph(in_name: str = "input", out_names: tuple[str, ...] = ("logits",), name: str = "base",
               seed: int = 0) -> onnx.GraphProto:
    """Flatten -> MatMul -> Add (64 -> 10), extra outputs as Identity copies of the first."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((64, 10)).astype(np.float32)
    nodes = [helper.make_node("Flatten", [in_name], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], [out_names[0]])]
    nodes += [helper.make_node("Identity", [out_names[0]], [extra]) for extra in out_names[1:]]
    return helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 10]) for o in out_names],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.zeros(10, np.float32), "b")])


class Shared:
    """What rows share within a session, each made on first use: the seed run folder and the lab head."""

    def __init__(self, make_seed: Callable[[], Path], lab: Callable[[], dict[str, str]]) -> None:
        self.make_seed = make_seed
        self.lab = lab


class Workspace2(Workspace):
    """One row's folder (the command's cwd) and the campaign's files, made in it on demand."""

    def __init__(self, root: Path, shared: Shared) -> None:
        super().__init__(root, lambda: shared.make_seed())
        self.shared = shared

    # ---------------------------------------------------------------------------------------------- files

    @cached_property
    def model(self) -> Path:  # the campaign's good.onnx
        return self.save(base_graph(), "good.onnx")

    @cached_property
    def profile(self) -> Path:
        return self.text("fast.yaml", profile_text())

    def save(self, graph_or_model: onnx.GraphProto | onnx.ModelProto, relative: str | bytes,
             opsets: list[onnx.OperatorSetIdProto] | None = None, **options: Any) -> Path:
        """Write an ONNX model (a graph is wrapped at opset 17) to ``relative`` (a ``bytes`` name: not UTF-8)."""
        model = graph_or_model if isinstance(graph_or_model, onnx.ModelProto) else model_proto(graph_or_model, opsets)
        if isinstance(relative, bytes):
            target = os.path.join(os.fsencode(self.root), relative)
            with open(target, "wb") as handle:
                handle.write(model.SerializeToString())
            return Path(os.fsdecode(target))
        path = self.path(relative)
        onnx.save(model, str(path), **options)
        return path

    def calibration(self, folder: str = "calib", count: int = 20, seed: int = 0) -> Path:
        """A calibration folder: ``manifest.yaml`` and ``count`` samples ``sNN.npz`` of ``input``."""
        directory = self.path(f"{folder}/manifest.yaml").parent
        (directory / "manifest.yaml").write_text(MANIFEST)
        rng = np.random.default_rng(seed)
        for index in range(count):
            np.savez(directory / f"s{index:02d}.npz", input=rng.random(INPUT_SHAPE, dtype=np.float32))
        return directory

    def eval_set(self, relative: str = "eval/ok.npz", count: int = 64, seed: int = 1) -> Path:
        """An eval set: ``images`` [count, 1, 8, 8] float32 and ``labels`` [count] int64 in 0..9."""
        rng = np.random.default_rng(seed)
        path = self.path(relative)
        np.savez(path, images=rng.random((count, 1, 8, 8), dtype=np.float32), labels=rng.integers(0, 10, count))
        return path

    def profile_file(self, stem: str, text: str | None = None, **options: Any) -> Path:
        """``profiles/STEM.yaml``: ``text``, or :func:`profile_text` named ``stem`` with ``options``."""
        return self.text(f"profiles/{stem}.yaml", text if text is not None else profile_text(stem, **options))

    def device(self, relative: str, major: int = 1, minor: int = 5) -> Path:
        """A private character device node (root only; default 1:5, like /dev/zero; 1:7 is /dev/full)."""
        path = self.path(relative)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        return path

    def fifo(self, relative: str) -> Path:
        path = self.path(relative)
        os.mkfifo(path)
        return path

    def seed(self, relative: str = "out") -> Path:
        """A private copy of the session's seed run folder (fp32 and int8-static-minmax of good.onnx)."""
        target = self.root / relative
        shutil.copytree(self.shared.make_seed(), target, symlinks=True)
        return target

    # ------------------------------------------------------------------------------------------- commands

    def pytest(self, test_source: str, *args: object, profile: Path | None = None) -> list[str]:
        """Run the pytest plugin on ``test_x.py`` holding ``test_source``: ``python -m pytest test_x.py ARGS``."""
        self.text("test_x.py", test_source)
        self.command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                        "--edgeopt-profile", str(profile or self.profile)]
        return ["test_x.py", *[str(a) for a in args]]

    def shell(self, script: str) -> list[str]:
        """Run ``bash -c SCRIPT`` with ``$EDGEOPT`` the edgeopt command (``python -m edgeopt``)."""
        self.command = ["bash", "-c"]
        self.env["EDGEOPT"] = f"{sys.executable} -m edgeopt"
        return [script]


CASES2: list[Case] = []


def case(id: str, category: str, code: int, *phrases: str, **options: Any) -> Callable[[Callable[[Workspace2],
                                                                                          list[Any]]], Any]:
    """Register the decorated builder as one row of the second campaign."""
    def register(build: Callable[[Workspace2], list[Any]]) -> Callable[[Workspace2], list[Any]]:
        CASES2.append(Case(id, category, build, code, tuple(phrases), **options))  # type: ignore[arg-type]
        return build
    return register
