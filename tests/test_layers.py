"""The layer rule: each subpackage of edgeopt imports only the ones below it, with no cycles, and the
modules that run on boards stay light.

The layers, ground floor first (``docs/architecture.md``)::

    errors → core → profiles → models → zoo → backends → measure → evaluate → reports → workflows → lab → cli
    → roof

A module may import its own layer and any layer to its left.  Every import counts, function-local and
``TYPE_CHECKING`` ones included: a local import that dodges a cycle is still a dependency.  So do
``from edgeopt import workflows`` (a subpackage), ``from edgeopt import run_pipeline`` (the lazy root: the
module ``edgeopt._PUBLIC`` maps the name to), relative imports, and imports by name: a string literal given to
``importlib.import_module`` or ``__import__``, and, in a module that calls either, every string that spells an
edgeopt module (``edgeopt.backends``' registry, the roof's ``_PUBLIC``, the CLI's command modules).  The worker
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
WORKERS = {"edgeopt.measure.worker", "edgeopt.measure.ab_worker", "edgeopt.measure.jobs"}  # jobs: what they read
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
