"""Per-node sensitivity on a real model (the digits MLP with raw ink features), and recipe reproducibility."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.core.fileio import sha256_file
from edgeopt.evaluate.sensitivity import (
    analyse_sensitivity,
    output_sqnr,
    plot_sensitivity,
    reference_model_for,
    render_sensitivity_table,
    run_outputs,
)
from edgeopt.models.calibration import CalibrationSet, load_calibration, load_eval_split
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.quantize import make_variant
from edgeopt.models.recipes import Recipe
from edgeopt.models.variants import Variant

DIGITS = Path(__file__).resolve().parent.parent / "calibration_data" / "digits"
QUICK_BENCH = {"warmup_iterations": "5", "max_seconds": "1",
               # tests of the research tools, not of stability: no rule may turn a run invalid
               "max_drift_rel": "null", "max_outlier_fraction": "null", "max_load_avg_per_core": "null"}


def ink_model(directory: Path) -> Path:
    """Train (0.5 s) and export the lossy real model into ``directory``."""
    from edgeopt.models.export import export_onnx
    from edgeopt.zoo.digits_ink import train_digits_ink

    target = directory / "digits_ink.onnx"
    export_onnx(train_digits_ink(), [InputSpec("input", (1, 1, 8, 8), "float32")], target, exporter="torchscript",
                source="edgeopt.zoo.digits_ink:digits_ink", source_sha256="test")  # node names the tests expect
    return target


def quick_profile(directory: Path) -> Path:
    """host-cpu with a 1 s timing loop: enough samples for p50/p95 intervals, short enough for tests."""
    source = Path(__file__).resolve().parent.parent / "hardware_profiles" / "host-cpu.yaml"
    lines = []
    for line in source.read_text().splitlines():
        key = line.strip().split(":")[0]
        if key in QUICK_BENCH:
            line = f"{line.split(':')[0]}: {QUICK_BENCH[key]}"
        lines.append(line.replace("name: host-cpu", "name: host-cpu-quick"))
    target = directory / "host-cpu-quick.yaml"
    target.write_text("\n".join(lines) + "\n")
    return target


def eval_feeds(count: int) -> list[dict[str, np.ndarray]]:
    images, _ = load_eval_split(DIGITS / "eval.npz")
    return [{"input": image.reshape(1, 1, 8, 8)} for image in images[:count]]


@pytest.fixture(scope="module")
def ink(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CalibrationSet, Variant]:
    directory = tmp_path_factory.mktemp("ink")
    model = ink_model(directory)
    calibration = load_calibration(DIGITS)
    variant = make_variant(model, Recipe.parse("int8-static-minmax"), directory / "variants", calibration=calibration)
    return model, calibration, variant


def test_sensitivity_names_real_nodes_ranked_worst_first(ink: tuple[Path, CalibrationSet, Variant],
                                                        tmp_path: Path) -> None:
    model, calibration, variant = ink
    float_model = reference_model_for(model, variant.path, tmp_path / "work")
    report = analyse_sensitivity(float_model, variant.path, calibration.take(16).feeds(), tmp_path / "work")
    graph_nodes = {n.name for n in onnx.load(str(model)).graph.node}
    assert report.samples == 16
    assert report.ranked_nodes() and set(report.ranked_nodes()) <= graph_nodes
    scores = [n.score_db if n.score_db is not None else np.inf for n in report.nodes]
    assert scores == sorted(scores)
    # the outlier-channel tensor: the Concat of learned features and raw ink counts, and the Gemm reading it
    assert set(report.ranked_nodes()[:2]) == {"/Concat", "/head/head.0/Gemm"}
    table = render_sensitivity_table(report, top=5)
    assert "/head/head.0/Gemm" in table and "accumulated" in table
    png = plot_sensitivity(report, tmp_path / "sensitivity.png", top=5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = [t for t in report.tensors if t.kind == "weight"]
    assert weights and all(t.local_sqnr_db is None or t.local_sqnr_db > 20 for t in weights if "weight" in t.tensor)


def test_excluding_top_ranked_beats_random_nodes(ink: tuple[Path, CalibrationSet, Variant], tmp_path: Path) -> None:
    model, calibration, variant = ink
    float_model = reference_model_for(model, variant.path, tmp_path / "work")
    ranked = analyse_sensitivity(float_model, variant.path, calibration.take(16).feeds(),
                                 tmp_path / "work").ranked_nodes()
    feeds = eval_feeds(96)
    reference = run_outputs(model, feeds)

    def sqnr(excluded: tuple[str, ...]) -> float:
        recipe = replace(Recipe.parse("int8-static-minmax"), exclude_nodes=excluded)
        made = make_variant(model, recipe, tmp_path / "variants", calibration=calibration)
        value = output_sqnr(reference, run_outputs(made.path, feeds))
        return np.inf if value is None else value

    k = 2
    top = sqnr(tuple(ranked[:k]))
    rng = np.random.default_rng(0)
    random = [sqnr(tuple(rng.choice(ranked, size=k, replace=False))) for _ in range(4)]
    assert top > sqnr(()) + 3  # keeping the two worst nodes in float wins back several dB ...
    assert top > max(random)  # ... and more than any of four random pairs of quantized nodes


def test_same_recipe_gives_byte_identical_model(tmp_path: Path) -> None:
    """Reproducibility (issue item 7): two fresh make_variant calls, different folders, same bytes."""
    from tests import zoo

    model = zoo.tiny_conv_model(tmp_path / "tiny_conv.onnx")
    rng = np.random.default_rng(0)
    calibration = CalibrationSet("seeded", "tests", tuple(
        {"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(8)))
    recipe = Recipe.parse("int8-static-entropy")
    first = make_variant(model, recipe, tmp_path / "a", calibration=calibration)
    second = make_variant(model, recipe, tmp_path / "b", calibration=calibration)
    assert first.sha256 == second.sha256 == sha256_file(second.path)
    assert first.provenance["key"] == second.provenance["key"]
    # what provenance records: the recipe, the parent's hash and the calibration set's order-sensitive content hash
    assert first.provenance["recipe"] == recipe.to_dict()
    assert first.provenance["parent"]["sha256"] == sha256_file(model)
    assert first.provenance["calibration"]["content_hash"] == calibration.content_hash
    assert first.provenance["calibration"]["count"] == 8
    reordered = CalibrationSet("seeded", "tests", tuple(reversed(calibration.samples)))
    assert reordered.content_hash != calibration.content_hash  # calibration order is part of the identity
