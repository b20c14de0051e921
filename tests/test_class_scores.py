"""Class scores recognised by their values and by the graph's own ranking, top-1 agreement counted where fp32
decided, and a shipped top-1 floor a broken classifier cannot pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.evaluate.fidelity import TOP1_MARGIN, compare
from edgeopt.evaluate.gate import GateResult, Verdict, judge_outputs
from edgeopt.models.graph import class_score_outputs
from edgeopt.profiles.schema import list_profiles

POSITIONS = 4768  # the per-location face classifier of the field case


def _gate() -> GateResult:
    return GateResult(variant="int8", profile="p", checks=(), host_matches=True, proxy=False)


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[TensorProto]) -> Path:
    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _per_location_classifier(path: Path, weights: np.ndarray) -> Path:
    """A face detector's classification head: a 1x1 Conv (2 classes) over ``[1, 8, 16, 298]`` features
    (4,768 locations), then NCHW -> [1, 4768, 2], and a softmax spelt out as Exp / ReduceSum / Div (no Softmax
    node for the graph to see), as exporters that decompose it write it."""
    inits = [numpy_helper.from_array(weights.astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, -1, 2], np.int64), "shape"),
             numpy_helper.from_array(np.array([-1], np.int64), "last")]
    nodes = [helper.make_node("Conv", ["features", "w"], ["logits"]),
             helper.make_node("Transpose", ["logits"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["nhwc", "shape"], ["per_location"]),
             helper.make_node("Exp", ["per_location"], ["odds"]),
             helper.make_node("ReduceSum", ["odds", "last"], ["total"], keepdims=1),
             helper.make_node("Div", ["odds", "total"], ["scores"])]
    return _save(path, nodes, [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, 16, 298])],
                 [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4768, 2])], inits)


def _run(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, feed)[0] for feed in feeds])


def test_a_broken_per_location_classifier_fails_every_shipped_top1_floor(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 1, (2, 8, 1, 1))
    fp32_model = _per_location_classifier(tmp_path / "fp32.onnx", weights)
    broken = weights + rng.normal(0, 0.8, weights.shape)  # the variant's weights far from fp32's
    broken_model = _per_location_classifier(tmp_path / "broken.onnx", broken)
    assert class_score_outputs(onnx.load(str(fp32_model))) == set()  # no Softmax node: the values tell
    feeds = [{"features": rng.normal(0, 1, (1, 8, 16, 298)).astype(np.float32)}]
    reference, variant = _run(fp32_model, feeds), _run(broken_model, feeds)
    found = compare(reference, variant, "scores", class_scores=False)  # the graph said no; the values sum to 1
    assert found.top1_agreement is not None and 0.6 < found.top1_agreement < 0.85
    assert found.top1_positions + found.top1_undecided == POSITIONS and found.top1_margin == TOP1_MARGIN
    assert found.headline() is not None and found.headline()[0] == "top1"  # not decision agreement
    assert judge_outputs(_gate(), {"min_top1_agreement": 0.5}, [found]).verdict is Verdict.PASS  # the old floor
    for profile in list_profiles():
        floor = profile.budgets.min_top1_agreement
        assert floor is not None and floor >= 0.8, profile.name
        (check,) = judge_outputs(_gate(), {"min_top1_agreement": floor}, [found]).checks
        assert check.verdict is Verdict.FAIL, (profile.name, check.sentence)
        assert f"positions fp32 decided (top-1 probability ahead of top-2 by > 0.01; {found.top1_undecided} " \
               "undecided left out) (output scores)" in check.sentence
    kept = compare(reference, _run(_per_location_classifier(tmp_path / "kept.onnx", weights * 1.001), feeds),
                   "scores", class_scores=False)
    assert judge_outputs(_gate(), {"min_top1_agreement": 0.8}, [kept]).verdict is Verdict.PASS


def test_a_perfect_classifier_on_the_default_16_reference_samples_passes_the_shipped_top1_floor() -> None:
    logits = np.random.default_rng(3).normal(0, 1, (16, 10)).astype(np.float32)
    logits[np.arange(16), np.arange(16) % 10] = 6.0  # each sample decided
    found = compare(logits, logits * 1.0001, "logits", class_scores=True)
    for profile in list_profiles():
        floor = profile.budgets.min_top1_agreement
        assert floor is not None
        (check,) = judge_outputs(_gate(), {"min_top1_agreement": floor}, [found]).checks
        assert check.verdict is Verdict.PASS, (profile.name, check.sentence)  # 16/16: Wilson [0.806, 1]


def test_top1_counts_only_the_positions_fp32_decided() -> None:
    decided = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.3, 0.7], [0.6, 0.4], [0.15, 0.85]])
    ties = np.array([[0.502, 0.498], [0.498, 0.502], [0.5, 0.5], [0.499, 0.501]])
    reference = np.concatenate([decided, ties]).astype(np.float32)
    variant = reference[:, ::-1].copy()  # every position flipped ...
    variant[:5] = reference[:5]  # ... but five of the six decided ones
    found = compare(reference, variant, "face")
    assert (found.top1_agreement, found.top1_positions, found.top1_undecided) == (pytest.approx(5 / 6), 6, 4)
    assert found.headline() == ("top1", pytest.approx(5 / 6))  # a class-score output: not decision agreement
    logits = np.log(reference)  # the same as logits: decided through their softmax, the same positions
    assert compare(logits, np.log(variant), "face").top1_positions == 6
    # an untrained network's near-equal logits
    flat = np.random.default_rng(1).normal(0, 0.01, (16, 1000)).astype(np.float32)
    assert compare(flat, flat[:, ::-1].copy(), "logits").top1_agreement is None  # decided nothing: no figure


def test_an_output_the_graph_ranks_is_class_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(0, 1, (5, k)).astype(np.float32), f"w{k}") for k in (3, 4, 6)]
    nodes = [helper.make_node("MatMul", ["x", "w3"], ["scores"]), helper.make_node("MatMul", ["x", "w4"], ["boxes"]),
             helper.make_node("MatMul", ["x", "w6"], ["ranked"]),
             helper.make_node("ArgMax", ["scores"], ["label"], axis=2, keepdims=0),  # the last of 3 axes
             helper.make_node("ArgMax", ["boxes"], ["which"], keepdims=0),  # axis 0: not a class axis
             helper.make_node("TopK", ["ranked", "k"], ["best", "best_index"])]  # TopK's default: the last axis
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "k"))

    def out(name: str, shape: list[int], kind: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, kind, shape)

    path = _save(tmp_path / "ranked.onnx", nodes, [out("x", [1, 6, 5])],
                 [out("scores", [1, 6, 3]), out("boxes", [1, 6, 4]), out("ranked", [1, 6, 6]),
                  out("label", [1, 6], TensorProto.INT64), out("which", [6, 4], TensorProto.INT64),
                  out("best", [1, 6, 2]), out("best_index", [1, 6, 2], TensorProto.INT64)], inits)
    assert class_score_outputs(onnx.load(str(path))) == {"scores", "ranked"}
