"""The layer rule: each subpackage of edgeopt imports only the ones below it, with no cycles, and the
modules that run on boards stay light.

The layers, ground floor first (``docs/architecture.md``)::

    errors → core → profiles → models → zoo → backends → measure → evaluate → reports → history → workflows → lab → cli
    → roof

A module may import its own layer and any layer to its left.  Every import counts, function-local and
``TYPE_CHECKING`` ones included: a local import that dodges a cycle is still a dependency.  So do
``from edgeopt import workflows`` (a subpackage), ``from edgeopt import run_pipeline`` (the lazy root: the
module ``edgeopt._PUBLIC`` maps the name to), relative imports, and imports by name: a string literal given to
``importlib.import_module`` or ``__import__``, and, in a module that calls either, every string that spells an
edgeopt module (``edgeopt.backends``' registry, the roof's ``_PUBLIC``, the CLI's command modules).  The worker
modules (run on a board, their RSS measured) may import only ``errors``, ``core``, ``backends`` and each
other.  A few modules are also checked at run time, in a fresh interpreter, for the third-party
packages they must not pull in; so is every runner of the registry (``edgeopt.backends``), activated in a real
worker process on a tiny model: whatever a runner imports counts in every peak RSS the worker measures.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeopt.backends import _REGISTRY
from edgeopt.backends.availability import NEEDS, missing
from edgeopt.measure.jobs import TimingRule, WorkerJob

PACKAGE = Path(__file__).resolve().parent.parent / "edgeopt"
LAYERS = ("errors", "core", "profiles", "models", "zoo", "backends", "measure", "evaluate", "reports",
          "history", "workflows", "lab", "cli", "roof")
ROOF = {"edgeopt", "edgeopt.pytest_plugin", "edgeopt.__main__"}  # the package's lazy __init__, the plugin, -m
WORKERS = {"edgeopt.measure.worker", "edgeopt.measure.ab_worker", "edgeopt.measure.jobs"}  # jobs: what they read
WORKER_ALLOWANCE = {"errors", "core", "backends"}

# module -> third-party packages it must not import (checked in a fresh interpreter)
LIGHT = {
    "edgeopt": ("torch", "onnxruntime", "tensorrt", "onnx"),
    "edgeopt.core.host": ("numpy", "pydantic", "onnxruntime", "torch"),
    "edgeopt.measure.worker": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
    "edgeopt.measure.ab_worker": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
    "edgeopt.pytest_plugin": ("onnxruntime", "onnx", "numpy", "torch", "pydantic", "yaml", "mlflow"),
    "edgeopt.cli.report": ("numpy", "pydantic", "matplotlib", "onnxruntime", "torch"),
    "edgeopt.cli.tracking": ("mlflow",),
    "edgeopt.reports.mlflow_tracking": ("mlflow",),
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in ROOF:
        return "roof"
    return module.split(".")[1]


def is_module(name: str, root: Path = PACKAGE) -> bool:
    """Whether the dotted ``name`` is a module or a (regular) package under ``root``."""
    path = root.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def lazy_root(root: Path = PACKAGE) -> dict[str, str]:
    """The package root's ``_PUBLIC``: public name -> the module that defines it (read, never imported)."""
    for node in ast.parse((root / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == "_PUBLIC":
                pairs = zip(node.value.keys, node.value.values, strict=True)
                return {k.value: v.value for k, v in pairs if isinstance(k, ast.Constant) and isinstance(k.value, str)
                        and isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return {}


IMPORT_CALLS = {"import_module", "__import__"}


def _is_import_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id in IMPORT_CALLS) or (
        isinstance(func, ast.Attribute) and func.attr in IMPORT_CALLS)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module ``from <node.module> import ...`` names, relative ones resolved against ``importer``'s package."""
    if node.level == 0:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _walk(tree: ast.Module) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, with whether it runs when the module is imported (outside every function and lambda)."""
    pending: list[tuple[ast.AST, bool]] = [(tree, True)]
    while pending:
        node, on_import = pending.pop()
        yield node, on_import
        inner = on_import and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        pending.extend((child, inner) for child in reversed(list(ast.iter_child_nodes(node))))


def edgeopt_imports(path: Path, root: Path = PACKAGE) -> Iterator[tuple[str, int, bool]]:
    """(imported edgeopt module, line, at module level) for every import in ``path``: ``import``, ``from``
    (relative ones resolved; a name taken from the lazy root counts as its defining module, ``__version__`` as
    the root ``edgeopt`` itself) and imports by name (see the module docstring).  "At module level": an import
    statement of the module's body, or an import by name that runs on import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    importer = module_name(path, root)
    public = lazy_root(root)
    top_level = {id(node) for node in tree.body}
    by_name = any(_is_import_call(node) for node in ast.walk(tree))
    seen: set[tuple[str, int]] = set()  # an import call's literal is also a string constant
    for node, on_import in _walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, importer, path.name == "__init__.py")
            for alias in node.names:
                if is_module(f"{module}.{alias.name}", root):  # ``from edgeopt.x import y``, y a module
                    names.append(f"{module}.{alias.name}")
                elif module == "edgeopt":  # the lazy root: the module that defines the name (``*``: every one)
                    names += list(public.values()) if alias.name == "*" else [public.get(alias.name, "edgeopt")]
                else:  # a name defined in ``module`` itself
                    names.append(module)
        elif isinstance(node, ast.Call) and _is_import_call(node) and node.args:
            first = node.args[0]
            names = [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else []
        elif by_name and isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if node.value.startswith("edgeopt.") and is_module(node.value, root) else []
        at_top = id(node) in top_level if isinstance(node, ast.Import | ast.ImportFrom) else on_import
        line = getattr(node, "lineno", 0)
        for name in names:
            if (name == "edgeopt" or name.startswith("edgeopt.")) and (name, line) not in seen:
                seen.add((name, line))
                yield name, line, at_top


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def violations(root: Path = PACKAGE) -> list[str]:
    """Every breach of the layer rule, the worker allowance and acyclicity under ``root``."""
    found: list[str] = []
    table = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in table}
    for name, path in table.items():
        rank = LAYERS.index(layer_of(name))
        for imported, line, _ in edgeopt_imports(path, root):
            if imported == "edgeopt":  # the package root itself: ``__version__`` (its public names count above)
                continue
            where = f"{path.relative_to(root.parent)}:{line}"
            target = imported if imported in table else imported.rsplit(".", 1)[0]
            if target not in table:
                found.append(f"{where}: imports {imported}, which does not exist")
                continue
            graph[name].add(target)
            if LAYERS.index(layer_of(target)) > rank:
                found.append(f"{where}: {layer_of(name)} imports upward into {layer_of(target)} ({imported})")
            if name in WORKERS and layer_of(target) not in WORKER_ALLOWANCE and target not in WORKERS:
                found.append(f"{where}: worker module imports {imported} (allowed: errors, core, backends)")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_breaks_the_layer_rule() -> None:
    assert violations() == []


def test_every_module_belongs_to_a_layer() -> None:
    for name in modules():
        assert layer_of(name) in LAYERS, f"{name} is outside every layer: put it in a subpackage"


def copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "edgeopt"
    for path in modules().values():
        target = root / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    return root


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    stats = root / "core" / "stats.py"
    stats.write_text(stats.read_text() + "\n\ndef _late() -> None:\n    from edgeopt.evaluate.gate import Verdict\n")
    last_line = len(stats.read_text().splitlines())
    found = violations(root)
    assert [line for line in found if not line.startswith("import cycle")] == [
        f"edgeopt/core/stats.py:{last_line}: core imports upward into evaluate (edgeopt.evaluate.gate)"]
    assert any("edgeopt.core.stats" in line and "edgeopt.evaluate.gate" in line for line in found)  # gate uses stats


def test_a_cycle_and_a_heavy_worker_import_are_caught(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    (root / "core" / "fileio.py").write_text((root / "core" / "fileio.py").read_text()
                                             + "\nfrom edgeopt.core import stats  # noqa\n")
    (root / "core" / "stats.py").write_text((root / "core" / "stats.py").read_text()
                                            + "\nfrom edgeopt.core import fileio  # noqa\n")
    (root / "measure" / "worker.py").write_text((root / "measure" / "worker.py").read_text()
                                                + "\nfrom edgeopt.measure import results  # noqa\n")
    found = violations(root)
    assert "import cycle: edgeopt.core.fileio -> edgeopt.core.stats" in found
    assert any("worker module imports edgeopt.measure.results" in line for line in found)


# hole -> (code appended to core/stats.py, whose last line imports a higher layer; the module the reader must see)
HOLES = {
    "a subpackage from the root": ("from edgeopt import workflows  # noqa", "edgeopt.workflows"),
    "a module from a subpackage": ("from edgeopt.workflows import pipeline  # noqa", "edgeopt.workflows.pipeline"),
    "the lazy root": ("from edgeopt import run_pipeline  # noqa", "edgeopt.workflows.pipeline"),
    "a relative import": ("from ..workflows.pipeline import run_pipeline  # noqa", "edgeopt.workflows.pipeline"),
    "a relative package": ("from .. import workflows  # noqa", "edgeopt.workflows"),
    "importlib": ("import importlib\n\n\ndef _late() -> object:\n"
                  "    return importlib.import_module('edgeopt.workflows.pipeline')", "edgeopt.workflows.pipeline"),
    "__import__": ("def _late() -> object:\n    return __import__('edgeopt.workflows.pipeline')",
                   "edgeopt.workflows.pipeline"),
    "a name import_module is given": ("from importlib import import_module\n\n\ndef _late() -> object:\n"
                                      "    return import_module(_LATER[0])\n\n\n_LATER = ('edgeopt.workflows.sweep',)",
                                      "edgeopt.workflows.sweep"),
}


@pytest.mark.parametrize("hole", sorted(HOLES))
def test_every_way_of_importing_a_higher_layer_is_caught(tmp_path: Path, hole: str) -> None:
    code, imported = HOLES[hole]
    root = copy_package(tmp_path)
    before = set(violations(root))
    stats = root / "core" / "stats.py"
    text = stats.read_text()
    stats.write_text(f"{text}\n\n{code}\n")
    line = len(text.splitlines()) + 2 + len(code.splitlines())
    found = [v for v in violations(root) if v not in before and not v.startswith("import cycle")]
    assert found == [f"edgeopt/core/stats.py:{line}: core imports upward into workflows ({imported})"]


def test_the_roofs_public_names_are_its_edges() -> None:
    imported = {name for name, _, _ in edgeopt_imports(PACKAGE / "__init__.py")}
    assert set(lazy_root().values()) <= imported and "edgeopt.workflows.pipeline" in lazy_root().values()


def test_a_module_name_is_not_an_import_where_nothing_imports_by_name(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    stats = root / "core" / "stats.py"
    stats.write_text(stats.read_text() + "\n\nWHERE = 'edgeopt.workflows.pipeline'  # a label, never imported\n")
    assert "edgeopt.workflows.pipeline" not in {name for name, _, _ in edgeopt_imports(stats, root)}


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_module_stays_light(module: str) -> None:
    heavy = LIGHT[module]
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} pulled in {result.stdout.strip()}"


# ---------------------------------------------------------------------------------- runners in the worker

WORKER_HEAVY = ("onnx", "pydantic", "yaml", "torch", "mlflow", "matplotlib")  # never in a measurement worker
RUNTIME_ALLOWED = {"torch": ("torch",)}  # ... except the runner's own runtime
# standard-library modules an ONNX Runtime worker never uses, which cost its measured peak RSS (MiB, with the
# modules they pull in): OpenSSL's libcrypto ~3.6, email/zipfile/csv ~2.2, decimal/fractions ~0.5
ORT_WORKER_UNUSED = ("hashlib", "importlib.metadata", "statistics")
# backend -> the session settings of its worker job on the tiny model (the backend's settings dataclass fills
# in the rest); every backend of the registry is listed (test_every_registered_runner_is_checked)
RUNNER_SESSIONS: dict[str, dict[str, Any]] = {
    "onnxruntime": {},
    "onnxruntime-gpu": {"provider_options": [["CUDAExecutionProvider", {}]]},
    "openvino": {"precision": "fp32"},
    "tensorrt": {"precision": "fp32", "variant_kind": "fp32", "tensorrt": {"version_family": 10},
                 "input_shapes": {"x": [1, 4]}},
    "torch": {"inputs": [["x", [1, 4], "float32"]]},
}
TORCH_FACTORY = """import torch


class Tiny(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x)


def tiny():
    return Tiny()
"""


def tiny_onnx(path: Path) -> Path:
    """x [1, 4] -> Relu -> y, built here: the model every ONNX runner is activated on."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def heavy_for(backend: str) -> tuple[str, ...]:
    return tuple(m for m in WORKER_HEAVY if m not in RUNTIME_ALLOWED.get(backend, ()))


def imported_modules(importtime: str) -> set[str]:
    """The modules a ``python -X importtime`` run imported, from its stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_every_registered_runner_is_checked() -> None:
    assert set(RUNNER_SESSIONS) == set(_REGISTRY) == set(NEEDS)


@pytest.mark.parametrize("backend", sorted(RUNNER_SESSIONS))
def test_a_runner_module_imports_nothing_heavy(backend: str) -> None:
    """The runner module in a fresh interpreter; where its runtime is not installed and the module cannot be
    imported without it, every edgeopt module it imports instead, function-local ones included."""
    module = _REGISTRY[backend].module
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    own = sorted({name for name, _, _ in edgeopt_imports(path)})
    installed = missing(backend) is None
    code = (f"import importlib, sys\n"
            f"try:\n    importlib.import_module({module!r})\n"
            f"except Exception as error:\n"
            f"    if {installed!r}:\n        raise\n"
            f"    print(f'{module} not imported without its runtime: {{error!r}}', file=sys.stderr)\n"
            f"    for name in {own!r}:\n        importlib.import_module(name)\n"
            f"print([m for m in {heavy_for(backend)!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} pulled in {result.stdout.strip()}"


def _worker_job(backend: str, folder: Path) -> WorkerJob:
    if backend == "torch":
        (folder / "edgeopt_tiny_factory.py").write_text(TORCH_FACTORY, encoding="utf-8")
        model = "edgeopt_tiny_factory:tiny"
    else:
        model = str(tiny_onnx(folder / "tiny.onnx"))
    np.savez(folder / "inputs.npz", x=np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4))
    timing = TimingRule(stop_percentile="p50", confidence=0.95, target_ci_rel=0.5, min_iterations=20,
                        max_iterations=100, max_seconds=2.0, warmup_iterations=2)
    session = {"backend": backend, **RUNNER_SESSIONS[backend]}
    if backend in ("onnxruntime-gpu", "tensorrt"):
        session["cache_dir"] = str(folder / "cache")
    return WorkerJob(model_path=model, session=session, inputs_path=str(folder / "inputs.npz"), timing=timing,
                     result_path=str(folder / "result.json"))


@pytest.mark.parametrize("backend", sorted(RUNNER_SESSIONS))
def test_a_worker_running_a_runner_imports_nothing_heavy(backend: str, tmp_path: Path) -> None:
    """``python -m edgeopt.measure.worker`` measures a tiny model on the runner, for real; ``-X importtime``
    lists every module the process imported, start to finish (the runner's activate, the timed loop, the host
    fingerprint), with nothing added to the worker to ask it."""
    reason = missing(backend)
    if reason is not None:
        pytest.skip(f"{backend} cannot be activated here ({reason}); test_a_runner_module_imports_nothing_heavy "
                    "checks what its module imports")
    job = _worker_job(backend, tmp_path)
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job.to_dict()), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PACKAGE.parent)])}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeopt.measure.worker", str(job_path)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert Path(job.result_path).is_file(), done.stderr[-2000:]
    result = json.loads(Path(job.result_path).read_text(encoding="utf-8"))
    assert done.returncode == 0 and result["status"] == "ok", result.get("message", done.stderr[-2000:])
    assert result["reference_count"] == 0 and len(result["samples_ns"]) >= 20
    imported = imported_modules(done.stderr)
    heavy = sorted({name.split(".")[0] for name in imported} & set(heavy_for(backend)))
    assert heavy == [], f"a worker running {backend} imported {heavy}"
    if backend == "onnxruntime":  # the runtime itself imports none of them (benchmarks/test_overhead.py)
        unused = sorted(imported & set(ORT_WORKER_UNUSED))
        assert unused == [], f"the ONNX Runtime worker imported {unused}, which it never uses"


def test_tensorrt_build_planning_imports_nothing_heavy(tmp_path: Path) -> None:
    """What the TensorRT runner does in the worker before it calls TensorRT (its section read back from the
    job, the shape profile from the ONNX file, the build plan, the engine cache key and lookup), in a fresh
    interpreter: this part runs without a GPU, and imports neither onnx nor pydantic."""
    model = tiny_onnx(tmp_path / "tiny.onnx")
    settings = RUNNER_SESSIONS["tensorrt"]
    code = f"""
import sys
from pathlib import Path
from edgeopt.backends.tensorrt.engines import EngineCache, EngineKey
from edgeopt.backends.tensorrt.plan import plan_build, shape_profile
from edgeopt.backends.tensorrt.settings import TensorRtRunSettings, TensorRtSection
from edgeopt.core.fileio import sha256_file

run = TensorRtRunSettings.from_dict({settings!r})
section = TensorRtSection.from_dict(run.tensorrt)
ranges = shape_profile(Path({str(model)!r}), section, run.input_shapes)
options = plan_build(section, run.variant_kind, run.precision, "10.3.0", ranges)
key = EngineKey(sha256_file(Path({str(model)!r})), "10.3.0", "a GPU", "8.7", options)
assert EngineCache(Path({str(tmp_path / "engines")!r})).open(key, bytes) is None
assert [(r.name, r.min, r.max) for r in ranges] == [("x", (1, 4), (1, 4))], ranges
print([m for m in {heavy_for("tensorrt")!r} if m in sys.modules])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"planning a TensorRT build pulled in {result.stdout.strip()}"
