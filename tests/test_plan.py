"""``plan_run``: a run is planned once into a typed, frozen RunPlan, and everything after planning reads it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from edgeopt.models.modelref import ModelReference
from edgeopt.workflows import pipeline
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from edgeopt.workflows.plan import RunPlan, plan_run
from tests.profiles import write_profile


def counting_parse(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text ``ModelReference.parse`` is called with from now on (the real parse still runs)."""
    calls: list[str] = []
    real = ModelReference.parse.__func__  # type: ignore[attr-defined]

    def parse(cls: type[ModelReference], text: str) -> ModelReference:
        calls.append(text)
        return real(cls, text)  # type: ignore[no-any-return]

    monkeypatch.setattr(ModelReference, "parse", classmethod(parse))
    return calls


def test_the_model_reference_is_parsed_once_per_run(tmp_path: Path, mlp_model: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_parse(monkeypatch)
    profile = write_profile(tmp_path, "quick")
    result = run_pipeline(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=tmp_path / "out",
                                    variants=("fp32", "int8-dynamic")))
    assert result.exit_code in (0, 4, 5) and {m.variant_name for m in result.measurements} == {"fp32", "int8-dynamic"}
    assert calls == [str(mlp_model)]


def test_a_factory_run_parses_its_reference_once_and_calls_the_factory_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from tests import torch_models

    calls = counting_parse(monkeypatch)
    made: list[int] = []
    real = torch_models.tiny_cnn

    def counted(seed: int = 0) -> object:
        made.append(seed)
        return real(seed)

    monkeypatch.setattr(torch_models, "tiny_cnn", counted)
    profile = write_profile(tmp_path, "quick")
    run_pipeline(RunConfig(model="tests.torch_models:tiny_cnn", profiles=(str(profile),), out_dir=tmp_path / "out",
                           variants=("fp32",), exporter="torchscript"))
    assert calls == ["tests.torch_models:tiny_cnn"] and made == [0]


def test_the_plan_is_typed_frozen_and_written_before_nothing(tmp_path: Path, mlp_model: Path) -> None:
    profile = write_profile(tmp_path, "quick")
    out = tmp_path / "out"
    plan = plan_run(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=out,
                              variants=("fp32", "int8-static-minmax")))
    assert isinstance(plan, RunPlan) and not out.exists()  # planning writes nothing
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.recipes = ()  # type: ignore[misc]
    assert plan.reference.onnx_path == mlp_model and plan.declared is None
    assert [r.name for r in plan.recipes] == ["fp32"]  # int8-static without calibration data: skipped, said so
    assert any("int8-static variants skipped" in line for line in plan.describe())
    assert plan.timing_inputs(plan.profiles[0]) == out / "inputs" / "quick.npz"
    assert plan.describe()[0].startswith(f"plan: model ONNX file {mlp_model}; inputs ")


def test_run_pipeline_reads_on_one_screen() -> None:
    source = inspect.getsource(pipeline)
    function = next(node for node in ast.parse(source).body
                    if isinstance(node, ast.FunctionDef) and node.name == "run_pipeline")
    assert function.end_lineno is not None and function.end_lineno - function.lineno + 1 <= 60


def test_keep_float_names_nodes_or_op_types_of_every_int8_recipe(tmp_path: Path, mlp_model: Path) -> None:
    """--keep-float: a node name or an op type (each of its nodes) left in float by every int8 recipe, which says
    so in its name; an unknown token is refused, listing the model's op types."""
    import onnx

    from edgeopt.errors import ConfigError

    profile = write_profile(tmp_path, "quick")
    graph = onnx.load(str(mlp_model)).graph
    plan = plan_run(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=tmp_path / "out",
                              variants=("fp32", "int8-dynamic"), keep_float=(graph.node[0].op_type,)))
    fp32, dynamic = plan.recipes
    assert fp32.exclude_nodes == () and dynamic.exclude_nodes and dynamic.name.startswith("int8-dynamic-x")
    assert set(dynamic.exclude_nodes) == {n.name for n in graph.node if n.op_type == graph.node[0].op_type}
    with pytest.raises(ConfigError, match=r"--keep-float Nope: no node and no op type of that name in .*op types: "):
        plan_run(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=tmp_path / "out",
                           variants=("int8-dynamic",), keep_float=("Nope",)))
