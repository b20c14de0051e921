"""``edgeopt tune``: the paired drop statistic by hand, and real searches on the lossy digits model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import ConfigError
from edgeopt.workflows.tune import TuneConfig, paired_drop, render_tune_table, tune
from tests.test_sensitivity import DIGITS, ink_model, quick_profile


def test_paired_drop_counts_discordant_samples() -> None:
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    eye = np.eye(4)
    reference = eye[labels].copy()
    candidate = eye[labels].copy()
    candidate[0] = eye[1]  # fp32 right, candidate wrong
    candidate[1] = eye[2]  # fp32 right, candidate wrong
    reference[2] = eye[0]  # fp32 wrong, candidate right
    drop = paired_drop(reference, candidate, metric="top1", labels=labels, relative=False)
    assert drop.drop == pytest.approx(100 * (2 - 1) / 10)  # (b - c) / n, in points
    assert drop.discordant == 3 and drop.samples == 10
    assert drop.lower <= drop.drop <= drop.upper
    assert drop.metric_value == pytest.approx(0.8)
    relative = paired_drop(reference, candidate, metric="top1", labels=labels, relative=True)
    assert relative.drop == pytest.approx(10 / 0.9)  # % of fp32's 90 %
    same = paired_drop(reference, reference, metric="cosine", labels=None, relative=False)
    assert (same.drop, same.lower, same.upper) == pytest.approx((0.0, 0.0, 0.0))
    assert same.meets(0.0, "upper") and not drop.meets(5.0, "upper") and drop.meets(10.0, "point")
    with pytest.raises(ConfigError):
        paired_drop(reference, candidate, metric="top1", labels=None, relative=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tune")
    return ink_model(directory), quick_profile(directory)


@pytest.mark.slow
def test_tune_keeps_a_few_nodes_in_float_and_meets_the_budget(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, profile = setup
    config = TuneConfig(model=model, calibration=str(DIGITS), eval_set=str(DIGITS / "eval.npz"), profile=str(profile),
                        out_dir=tmp_path / "tune", max_drop=1.0, select="fewest")
    result = tune(config)
    assert result.exit_code == 0 and result.chosen is not None
    plain = next(c for c in result.candidates if c.k == 0)
    assert plain.drop is not None and plain.drop.lower > 0.5  # plain int8 loses accuracy, and the interval says so
    assert 1 <= result.chosen.k <= 3 and {"/Concat", "/head/head.0/Gemm"} <= set(result.chosen.excluded)
    assert result.chosen.drop is not None and result.chosen.drop.upper <= 1.0
    assert result.chosen.p50_ms is not None and result.baseline.p50_ms is not None
    searched = [c for c in result.candidates if not c.runtime and c.variant != "fp32"]
    assert len(searched) <= 2 + int(np.ceil(np.log2(len(result.ranking)))) + 1
    document = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert document["chosen"]["variant"] == result.chosen.variant and len(document["candidates"]) == len(
        result.candidates)
    assert (tmp_path / "tune" / "tune.png").read_bytes()[:4] == b"\x89PNG"
    assert "chosen" in render_tune_table(result)


CLI = ("import sys; from edgeopt.cli import main as cli; "
       "cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, 'edgeopt.cli.research'))); "
       "sys.exit(cli.main())")


@pytest.mark.slow
def test_tune_cli_keeps_fp32_when_no_int8_candidate_meets_the_budget(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, profile = setup
    done = subprocess.run([sys.executable, "-c", CLI, "tune", str(model), "--calibration", str(DIGITS), "--eval",
                           str(DIGITS / "eval.npz"), "--profile", str(profile), "--max-drop", "0",
                           "--metric", "cosine", "--max-exclude", "1", "--out", str(tmp_path / "t")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "budget not met: even with the 1 most sensitive nodes kept in float" in done.stdout
    assert "no int8 candidate meets it; keep fp32" in done.stdout
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["chosen"]["variant"] == "fp32"


@pytest.mark.slow
def test_tune_and_sweep_complete_on_a_dynamic_shape_classifier_with_a_labelled_eval_set(tmp_path: Path) -> None:
    """Symbolic batch, height and width: the eval images and calibration samples fix them (no reshape to 1)."""
    from edgeopt.workflows.sweep import SweepConfig, run_sweep
    from tests import profiles, zoo
    from tests.test_cli import write_calibration

    model = zoo.dynamic_conv_model(tmp_path / "dynamic.onnx")
    rng = np.random.default_rng(4)
    calibration = write_calibration(tmp_path / "calib", [rng.standard_normal((1, 3, 24, 40)).astype(np.float32)
                                                        for _ in range(16)], shape=(1, 3, 24, 40))
    images = rng.standard_normal((24, 3, 24, 40)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", images=images, labels=rng.integers(0, 10, 24))
    profile = profiles.write_profile(tmp_path, "quick", max_seconds=0.3)
    result = tune(TuneConfig(model=model, calibration=str(calibration), eval_set=str(tmp_path / "eval.npz"),
                             profile=str(profile), out_dir=tmp_path / "tune", max_drop=50.0, max_exclude=1))
    assert result.exit_code in (0, 1) and result.baseline.p50_ms is not None
    timed = json.loads(next((tmp_path / "tune" / "measurements").glob("fp32__quick.json")).read_text())
    assert timed["input_shapes"] == {"input": [1, 3, 24, 40]}  # the calibration sample's shape
    swept = run_sweep(SweepConfig(model=str(model), profiles=(str(profile),), out_dir=tmp_path / "sweep",
                                  calibration=str(calibration), eval_set=str(tmp_path / "eval.npz"),
                                  recipes=("int8-static-minmax",)))
    assert swept.points and not [f for f in swept.failures if f["variant"] in ("fp32", "int8-static-minmax")]


def _mlp(path: Path, inputs: tuple[str, ...] = ("x",), layers: int = 8, width: int = 16) -> Path:
    """Small MatMul/Add/Relu layers ([1, width]): Q/DQ around each costs more than the int8 math saves; each input
    goes through its own first MatMul, their sum through the rest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights = [], []
    for index, name in enumerate(inputs):
        first = rng.standard_normal((width, width)).astype(np.float32) / 4
        weights.append(numpy_helper.from_array(first, f"w_in{index}"))
        nodes.append(helper.make_node("MatMul", [name, f"w_in{index}"], [f"in{index}"]))
    nodes.append(helper.make_node("Sum", [f"in{i}" for i in range(len(inputs))], ["h0"]))
    for layer in range(layers):
        weights += [numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32) / 4, f"w{layer}"),
                    numpy_helper.from_array(rng.standard_normal(width).astype(np.float32) / 10, f"b{layer}")]
        nodes += [helper.make_node("MatMul", [f"h{layer}", f"w{layer}"], [f"m{layer}"]),
                  helper.make_node("Add", [f"m{layer}", f"b{layer}"], [f"a{layer}"]),
                  helper.make_node("Relu", [f"a{layer}"], [f"h{layer + 1}"])]
    nodes.append(helper.make_node("Identity", [f"h{layers}"], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, width])
                                             for n in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _calibration(directory: Path, inputs: tuple[str, ...], width: int = 16, count: int = 16) -> Path:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True)
    for index in range(count):
        np.savez(directory / f"s{index:02d}.npz", **{n: rng.standard_normal((1, width)).astype(np.float32)
                                                    for n in inputs})
    specs = "".join(f"  - {{name: {n}, dtype: float32, shape: [1, {width}]}}\n" for n in inputs)
    (directory / "manifest.yaml").write_text("name: mlp\nkind: arrays\ndescription: random\nprovenance: test\n"
                                             f"licence: CC0-1.0\ninputs:\n{specs}")
    return directory


@pytest.mark.slow
def test_tune_answers_fp32_when_no_int8_row_is_faster(tmp_path: Path) -> None:
    """Q/DQ around eight 16x16 MatMuls costs more than int8 saves: the fastest row within budget is fp32."""
    from tests import profiles

    model = _mlp(tmp_path / "mlp.onnx")
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "eval.npz", images=rng.standard_normal((32, 16)).astype(np.float32))  # no labels
    profile = profiles.write_profile(tmp_path, "quick", max_seconds=0.5)
    result = tune(TuneConfig(model=model, calibration=str(_calibration(tmp_path / "calib", ("x",))),
                             eval_set=str(tmp_path / "eval.npz"), profile=str(profile), out_dir=tmp_path / "tune",
                             max_drop=0.05, metric="cosine", max_exclude=2))
    assert result.exit_code == 0 and result.chosen is not None, result.message
    int8 = [c for c in result.candidates if c.variant != "fp32" and c.p50_ms is not None]
    assert int8 and result.chosen.variant == "fp32", (result.message, [(c.label, c.p50_ms) for c in int8])
    assert all(float(c.p50_ms["value"]) > float(result.chosen.p50_ms["value"]) for c in int8 if c.passes)
    assert "keep fp32" in result.message and "keep fp32" in (tmp_path / "tune" / "tune.md").read_text()
    assert json.loads((tmp_path / "tune" / "tune.json").read_text())["chosen"]["variant"] == "fp32"


@pytest.mark.slow
def test_a_two_input_model_tunes_with_cosine_and_an_eval_file_without_labels(tmp_path: Path) -> None:
    """The eval file holds one array per model input (as 'run --eval' takes it), and no labels."""
    from tests import profiles

    inputs = ("a", "b")
    model = _mlp(tmp_path / "two.onnx", inputs, layers=2)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "eval.npz", **{n: rng.standard_normal((24, 1, 16)).astype(np.float32) for n in inputs})
    profile = profiles.write_profile(tmp_path, "quick", max_seconds=0.3)
    result = tune(TuneConfig(model=model, calibration=str(_calibration(tmp_path / "calib", inputs)),
                             eval_set=str(tmp_path / "eval.npz"), profile=str(profile), out_dir=tmp_path / "tune",
                             max_drop=0.05, metric="cosine"))
    assert result.exit_code == 0 and result.chosen is not None, result.message
    plain = next(c for c in result.candidates if c.k == 0 and c.variant != "fp32" and not c.runtime)
    assert plain.drop is not None and plain.drop.samples == 24 and 0 <= plain.drop.drop < 0.05
    with pytest.raises(ConfigError, match=r"--metric top1 needs 'labels' in the eval file; --metric cosine"):
        tune(TuneConfig(model=model, calibration=str(tmp_path / "calib"), eval_set=str(tmp_path / "eval.npz"),
                        profile=str(profile), out_dir=tmp_path / "tune2", max_drop=0.05, metric="top1"))


def test_the_cosine_drop_is_the_worst_outputs() -> None:
    """A transformer's first output can echo its token ids: the drop is judged on the worst float output, so a
    variant whose embeddings are destroyed never passes on an intact first output (MiniLM's int8-static: 0.75)."""
    rng = np.random.default_rng(0)
    intact, embeddings = rng.standard_normal((8, 4)), rng.standard_normal((8, 16))
    destroyed = rng.standard_normal((8, 16))
    drop = paired_drop([intact, embeddings], [intact, destroyed], metric="cosine", labels=None, relative=False)
    assert drop.drop > 0.5 and not drop.meets(0.01, "upper")
    assert paired_drop(intact, intact, metric="cosine", labels=None, relative=False).drop == pytest.approx(0.0)
