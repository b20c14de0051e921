"""Every measurement goes through ``edgeopt.measure.cell.measure_cell``: the reuse rule, the worker's job and the
saved document are built in one place.

A source scan (ast) holds the package to that: only ``measure/cell.py`` (and ``measure/emulation.py``, the
outputs-only accuracy emulation) launch ``edgeopt.measure.worker`` or build a ``WorkerJob``, and the retired entry
points (``measure_variant``, ``measure_or_reuse``) are named nowhere.  A planted violation in a copy of the package
shows the scan can fail.  Then ``measure_cell`` itself, on a tiny model: measured and saved once, reused (no worker),
redone with ``force``, and reused only under the same key.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests import profiles, zoo

PACKAGE = Path(__file__).resolve().parent.parent / "edgeopt"
WORKER = "edgeopt.measure.worker"
MEASURING = {"edgeopt/measure/cell.py", "edgeopt/measure/emulation.py"}  # emulation: outputs only, untimed
RETIRED = ("measure_variant", "measure_or_reuse")
RETIRED_WORD = re.compile(r"\b(" + "|".join(RETIRED) + r")\b")


def _called(func: ast.expr) -> str | None:
    """The name a call is made by: ``f(...)`` and ``module.f(...)`` both give ``f``."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _names(node: ast.AST) -> list[str]:
    """Every identifier a node introduces or uses (imports, definitions, names, attributes, keywords)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.alias):
        return [node.name.rsplit(".", 1)[-1], *([node.asname] if node.asname else [])]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    return []


def bypasses(root: Path = PACKAGE) -> list[str]:
    """Every place under ``root`` (a copy of the ``edgeopt`` package) that measures around ``measure_cell``."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        where = f"edgeopt/{path.relative_to(root).as_posix()}"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        for node in ast.walk(tree):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Call) and where not in MEASURING:
                called = _called(node.func)
                first = node.args[0] if node.args else None
                if (called == "run_worker" and isinstance(first, ast.Constant) and first.value == WORKER):
                    found.append(f"{where}:{line}: launches {WORKER} itself (use measure_cell)")
                if called == "WorkerJob":
                    found.append(f"{where}:{line}: builds a WorkerJob itself (use measure_cell)")
            for name in _names(node):
                if name in RETIRED:
                    found.append(f"{where}:{line}: names the retired {name}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.extend(f"{where}:{line}: names the retired {m} in a string"
                             for m in sorted(set(RETIRED_WORD.findall(node.value))))
    return found


def copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "edgeopt"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def test_every_measurement_goes_through_measure_cell() -> None:
    assert bypasses() == []


def test_the_scan_sees_a_planted_bypass(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    assert bypasses(root) == []
    target = root / "workflows" / "profile.py"
    before = len(target.read_text().splitlines())
    target.write_text(target.read_text() + (
        "\n\ndef _around(job, profile):\n"
        "    from edgeopt.measure.jobs import WorkerJob\n"
        "    from edgeopt.measure.launcher import measure_variant, run_worker\n"
        "    run_worker('edgeopt.measure.worker', WorkerJob(model_path='m', session={}), 1.0)\n"
        "    run_worker('edgeopt.measure.ab_worker', job, 1.0)  # another worker: allowed\n"
        "    return measure_variant\n"))
    (root / "lab" / "node.py").write_text((root / "lab" / "node.py").read_text()
                                          + '\n_LEGACY = {"measure_or_reuse": "edgeopt.workflows.reuse"}\n')
    found = bypasses(root)
    assert f"edgeopt/workflows/profile.py:{before + 6}: launches {WORKER} itself (use measure_cell)" in found
    assert f"edgeopt/workflows/profile.py:{before + 6}: builds a WorkerJob itself (use measure_cell)" in found
    assert f"edgeopt/workflows/profile.py:{before + 5}: names the retired measure_variant" in found
    assert f"edgeopt/workflows/profile.py:{before + 8}: names the retired measure_variant" in found
    assert any(line.startswith("edgeopt/lab/node.py:") and "measure_or_reuse in a string" in line for line in found)
    assert not any("ab_worker" in line or f":{before + 7}:" in line for line in found), found
    assert len(found) == 5, found


# ------------------------------------------------------------------------------------------ measure_cell, for real

@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from edgeopt.measure.launcher import prepare_timing_inputs
    from edgeopt.models.variants import Variant
    from edgeopt.profiles.schema import load_profile

    folder = tmp_path_factory.mktemp("cell")
    profile = load_profile(str(profiles.write_profile(folder, "quick", max_seconds=0.1, min_iterations=20,
                                                      warmup_iterations=2)))
    variant = Variant.from_file(zoo.identity_add(folder / "identity_add.onnx"))
    timing = prepare_timing_inputs(variant.path, profile, None, folder / "inputs.npz")
    return {"folder": folder, "profile": profile, "variant": variant, "timing": timing}


@pytest.fixture()
def worker_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The modules measure_cell launched (the real launcher, counted)."""
    from edgeopt.measure import cell, launcher

    launched: list[str] = []

    def counted(module: str, *args: Any, **kwargs: Any) -> launcher.WorkerRun:
        launched.append(module)
        return launcher.run_worker(module, *args, **kwargs)

    monkeypatch.setattr(cell, "run_worker", counted)
    return launched


def test_measure_cell_saves_reuses_and_redoes_with_force(tiny: dict[str, Any], tmp_path: Path,
                                                         worker_runs: list[str]) -> None:
    from edgeopt.measure.cell import Cell, CellContext, measure_cell
    from edgeopt.measure.results import Measurement

    cell = Cell(tiny["variant"], tiny["profile"], tiny["timing"])
    assert cell.stem == "identity_add__quick"
    first = measure_cell(cell, CellContext(tmp_path))
    assert first.ok, first.failure
    assert worker_runs == [WORKER]
    saved = tmp_path / "identity_add__quick.json"
    assert Measurement.load(saved) == first  # saved before it returned

    again = measure_cell(cell, CellContext(tmp_path))
    assert worker_runs == [WORKER]  # no worker: the stored measurement is still valid
    assert again == first and again.created_at == first.created_at

    forced = measure_cell(cell, CellContext(tmp_path, force=True))
    assert forced.ok and worker_runs == [WORKER, WORKER]
    assert forced.latency is not None and first.latency is not None
    assert forced.latency.samples_ns != first.latency.samples_ns  # measured again, and saved over the first
    assert Measurement.load(saved) == forced


def test_a_file_stem_names_the_saved_measurement(tiny: dict[str, Any], tmp_path: Path,
                                                 worker_runs: list[str]) -> None:
    from edgeopt.measure.cell import Cell, CellContext, measure_cell

    cell = Cell(tiny["variant"], tiny["profile"], tiny["timing"], file_stem="identity_add__quick__rerun1")
    measurement = measure_cell(cell, CellContext(tmp_path, proxy=True))
    assert measurement.ok and measurement.proxy and measurement.variant_name == "identity_add"
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["identity_add__quick__rerun1.json"]
    assert worker_runs == [WORKER]


def test_a_stored_measurement_is_reused_only_under_the_same_key(tiny: dict[str, Any], tmp_path: Path,
                                                                worker_runs: list[str]) -> None:
    from edgeopt.measure.cell import Cell, CellContext, measure_cell, stored_measurement

    context = CellContext(tmp_path)
    cell = Cell(tiny["variant"], tiny["profile"], tiny["timing"])
    assert measure_cell(cell, context).ok
    assert stored_measurement(cell, context) is not None
    assert stored_measurement(cell, CellContext(tmp_path, force=True)) is None
    assert stored_measurement(cell, CellContext(tmp_path, reference_sha="other inputs")) is None
    longer = tiny["profile"].model_copy(update={"bench": tiny["profile"].bench.model_copy(update={"max_seconds": 0.2})})
    assert stored_measurement(Cell(tiny["variant"], longer, tiny["timing"]), context) is None  # other bench
    budgets = tiny["profile"].with_budgets({"p95_ms": 0.5})  # a budget re-judges, it does not re-measure
    assert stored_measurement(Cell(tiny["variant"], budgets, tiny["timing"]), context) is not None
    assert stored_measurement(cell, CellContext(tmp_path, extra_references={"shifted": tiny["timing"]})) is None
    assert worker_runs == [WORKER]
