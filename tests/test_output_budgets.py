"""Output budgets: a variant that changes what the model decides never passes, whatever its speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgeopt.evaluate.fidelity import compare
from edgeopt.evaluate.gate import GateResult, Verdict, judge_outputs
from edgeopt.evaluate.metrics import MetricResult
from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.quantize import make_variant
from edgeopt.models.recipes import Recipe
from edgeopt.profiles.schema import load_profile

SHIPPED = {k: v for k, v in load_profile("host-cpu").budgets.model_dump().items() if v is not None}


def _outputs(path: Path, samples: tuple[dict[str, np.ndarray], ...]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, sample)[0] for sample in samples])


def _broken_qdq(conv_model: Path, calibration: CalibrationSet, directory: Path) -> Path:
    """The real int8-static-minmax variant with its classifier's int8 weights scrambled: a valid graph that runs,
    as fast as the good one, and computes something else.  (Not the conv's: after ReLU and a global average pool
    over noise-like inputs, a permuted conv still gave cosine 0.989 on a VNNI CPU, above the 0.95 floor.)"""
    variant = make_variant(conv_model, Recipe.parse("int8-static-minmax"), directory, calibration=calibration)
    model = onnx.load(str(variant.path))
    weights = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2)
    scrambled = np.random.default_rng(5).permutation(numpy_helper.to_array(weights).ravel())
    weights.CopyFrom(numpy_helper.from_array(scrambled.reshape(tuple(weights.dims)), weights.name))
    broken = directory / "broken.onnx"
    onnx.save(model, str(broken))
    return broken


def _gate() -> GateResult:
    return GateResult(variant="int8", profile="host-cpu", checks=(), host_matches=True, proxy=False)


def test_a_broken_qdq_variant_fails_the_shipped_default_budgets(conv_model: Path, make_calibration: object,
                                                               tmp_path: Path) -> None:
    calibration = make_calibration(conv_model, count=16, seed=0)  # type: ignore[operator]
    broken = _broken_qdq(conv_model, calibration, tmp_path)
    found = [compare(_outputs(conv_model, calibration.samples), _outputs(broken, calibration.samples), "output")]
    judged = judge_outputs(_gate(), SHIPPED, found)
    assert judged.verdict is Verdict.FAIL, [c.sentence for c in judged.checks]
    cosine = next(c for c in judged.checks if c.metric == "min_cosine")
    assert cosine.verdict is Verdict.FAIL and "< floor 0.95" in cosine.sentence
    good = make_variant(conv_model, Recipe.parse("fp16"), tmp_path, calibration=calibration)
    kept = [compare(_outputs(conv_model, calibration.samples), _outputs(good.path, calibration.samples), "output")]
    assert judge_outputs(_gate(), SHIPPED, kept).verdict is Verdict.PASS


def test_agreement_is_judged_by_its_interval() -> None:
    flips = np.array([[0.9], [0.1]] * 8, dtype=np.float32)
    half = flips.copy()
    half[:8] = 1 - half[:8]  # 8 of 16 decisions flip
    judged = judge_outputs(_gate(), {"min_decision_agreement": 0.8}, [compare(flips, half, "speech")])
    (check,) = judged.checks
    assert check.verdict is Verdict.FAIL and check.upper is not None and check.upper < 0.8
    few = judge_outputs(_gate(), {"min_decision_agreement": 0.8}, [compare(flips[:4], flips[:4] * 0.99, "speech")])
    assert few.checks[0].verdict is Verdict.INCONCLUSIVE  # 4 of 4 agree, but 4 decisions cannot show >= 0.8


def test_a_metric_drop_is_judged_by_its_paired_interval() -> None:
    metric = MetricResult("top1", 0.90, 0.85, 0.95, 360, percent=True, delta=-0.05, delta_lower=-0.07,
                          delta_upper=-0.03)
    (check,) = judge_outputs(_gate(), {"max_metric_drop": 2.0}, [], metric).checks
    assert check.verdict is Verdict.FAIL and check.value == pytest.approx(5.0) and "points" in check.sentence
    (check,) = judge_outputs(_gate(), {"max_metric_drop": 10.0}, [], metric).checks
    assert check.verdict is Verdict.PASS


def test_output_budgets_are_not_applicable_off_target() -> None:
    elsewhere = GateResult(variant="int8", profile="pi", checks=(), host_matches=False, proxy=False)
    found = [compare(np.ones((4, 16), np.float32), -np.ones((4, 16), np.float32), "x")]
    assert judge_outputs(elsewhere, SHIPPED, found).verdict is Verdict.NOT_APPLICABLE
    assert judge_outputs(_gate(), SHIPPED, []) == _gate()  # the fp32 reference: nothing to judge


def test_a_variant_without_an_fp32_reference_is_never_pass() -> None:
    judged = judge_outputs(_gate(), SHIPPED, [], missing_reference="the fp32 row failed (worker crashed)")
    assert judged.verdict is Verdict.INCONCLUSIVE
    (check,) = judged.checks
    assert check.sentence == ("no fp32 reference: the fp32 row failed (worker crashed); a variant whose outputs were "
                              "not compared with fp32's cannot pass on host-cpu: inconclusive")
    assert judge_outputs(_gate(), SHIPPED, []).checks == ()  # the fp32 row itself: nothing to compare
    for budgets in ({}, {"p95_ms": 10.0}, {"max_metric_drop": 1.0}):  # whatever budgets the profile sets
        assert judge_outputs(_gate(), budgets, [], missing_reference="x").verdict is Verdict.INCONCLUSIVE
