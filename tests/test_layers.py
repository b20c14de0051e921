"""The layer rule: each subpackage of edgeopt imports only the ones below it, with no cycles, and the
modules that run on boards stay light.

The layers, ground floor first (``docs/architecture.md``)::

    errors → core → profiles → models → zoo → backends → measure → evaluate → reports → workflows → lab → cli
    → roof

A module may import its own layer and any layer to its left.  Every import counts, function-local and
``TYPE_CHECKING`` ones included: a local import that dodges a cycle is still a dependency.  The worker
modules (run on a board, their RSS measured) may import only ``errors``, ``core``, ``backends`` and each
other.  A few modules are also checked at run time, in a fresh interpreter, for the third-party
packages they must not pull in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeopt"
LAYERS = ("errors", "core", "profiles", "models", "zoo", "backends", "measure", "evaluate", "reports",
          "workflows", "lab", "cli", "roof")
ROOF = {"edgeopt", "edgeopt.pytest_plugin", "edgeopt.__main__"}  # the package's lazy __init__, the plugin, -m
WORKERS = {"edgeopt.measure.worker", "edgeopt.measure.ab_worker"}
WORKER_ALLOWANCE = {"errors", "core", "backends"}

# module -> third-party packages it must not import (checked in a fresh interpreter)
LIGHT = {
    "edgeopt": ("torch", "onnxruntime", "tensorrt", "onnx"),
    "edgeopt.core.host": ("numpy", "pydantic", "onnxruntime", "torch"),
    "edgeopt.measure.worker": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
    "edgeopt.measure.ab_worker": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
    # the runners the worker loads: their imports count in every measured peak RSS
    "edgeopt.backends.onnxruntime": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
    "edgeopt.backends.onnxruntime_gpu": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
    "edgeopt.backends.openvino": ("torch", "pydantic", "yaml", "onnx", "mlflow", "matplotlib"),
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


def edgeopt_imports(path: Path, root: Path = PACKAGE) -> Iterator[tuple[str, int, bool]]:
    """(imported edgeopt module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            # ``from edgeopt.x import y`` where y is a module of its own
            names += [f"{node.module}.{a.name}" for a in node.names
                      if (root.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").is_file()]
        for name in names:
            if name == "edgeopt" or name.startswith("edgeopt."):
                yield name, node.lineno, id(node) in top_level


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
            if imported == "edgeopt":  # the lazy package root: only __version__ is taken from it
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


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_module_stays_light(module: str) -> None:
    heavy = LIGHT[module]
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} pulled in {result.stdout.strip()}"
