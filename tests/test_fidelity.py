"""Fidelity that means something for every kind of output: class scores of any rank, tiny outputs,
probability maps; never a cosine over a handful of elements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.evaluate.fidelity import MIN_COSINE_ELEMENTS, compare, worst
from edgeopt.models.graph import class_score_outputs
from edgeopt.reports.table import Row, _fidelity
from tests import zoo

RNG = np.random.default_rng(0)


def test_a_one_element_probability_gets_decision_agreement_not_a_cosine() -> None:
    # a voice-activity model's speech probability, one per call: the int8 variant flips 2 of 8 decisions
    reference = np.array([[0.9], [0.8], [0.1], [0.2], [0.95], [0.05], [0.7], [0.3]], dtype=np.float32)
    variant = reference.copy()
    variant[0, 0], variant[2, 0] = 0.3, 0.6
    result = compare(reference, variant, "output")
    assert result.cosine is None and result.min_cosine is None  # a 1-element cosine is always +-1
    assert result.elements_per_sample == 1 < MIN_COSINE_ELEMENTS
    assert result.decision_agreement == pytest.approx(6 / 8) and result.decision_threshold == 0.5
    assert result.headline() == ("decision", pytest.approx(0.75))
    assert result.max_abs_error == pytest.approx(0.6)


def test_sequence_scores_get_per_time_step_top1_agreement() -> None:
    # a text recogniser: [N, T, C] class scores per time step, one class clearly ahead at each
    reference = RNG.standard_normal((4, 40, 97)).astype(np.float32)
    np.put_along_axis(reference, RNG.integers(0, 97, (4, 40, 1)), 8.0, axis=2)
    variant = reference.copy()
    variant[0, :10] = -reference[0, :10]  # 10 of 160 steps decide differently
    result = compare(reference, variant, "logits")
    assert result.top1_positions == 4 * 40
    assert result.top1_agreement == pytest.approx(150 / 160)
    assert result.cosine is not None and result.cosine < 1.0
    assert result.headline() == ("top1", pytest.approx(150 / 160))


def test_classifier_scores_keep_per_sample_top1() -> None:
    reference = RNG.standard_normal((8, 10)).astype(np.float32)
    reference[np.arange(8), RNG.integers(0, 10, 8)] = 6.0  # each sample's class clearly ahead
    result = compare(reference, reference.copy(), "logits")
    assert result.top1_agreement == 1.0 and result.top1_positions == 8 and result.sqnr_db is None
    assert result.decision_agreement is None  # scores outside [0, 1] have no decision threshold


def test_integer_outputs_have_no_class_axis() -> None:
    reference = RNG.integers(0, 50, (2, 20)).astype(np.int64)  # decoded token ids, not scores
    result = compare(reference, reference.copy(), "ids")
    assert result.top1_agreement is None and result.cosine == pytest.approx(1.0)


def test_the_table_shows_the_worst_output_not_the_first() -> None:
    good = compare(np.linspace(0.1, 1, 64, dtype=np.float32).reshape(4, 16), np.linspace(0.1, 1, 64,
                   dtype=np.float32).reshape(4, 16), "embedding")
    probability = np.array([[0.9], [0.1], [0.8], [0.2]], dtype=np.float32)
    flipped = compare(probability, 1 - probability, "speech")
    assert worst([good, flipped]) == {"cosine": pytest.approx(1.0), "top1": 1.0, "decision": 0.0}
    fields = {name: None for name in Row.__dataclass_fields__ if name not in ("variant", "profile")}
    row = Row(**{**fields, "variant": "int8", "profile": "p", "precision": "int8", "expected_fast": True,
                 "status": "ok", "fidelity": (good, flipped)})
    assert _fidelity(row) == "cos 1.0000, top1 100.0%, decision 0.0%"


def test_top1_is_claimed_only_for_class_score_outputs(tmp_path: Path) -> None:
    classifier = onnx.load(str(zoo.tiny_conv_model(tmp_path / "conv.onnx")))  # ends in a Gemm: logits
    embedding = onnx.load(str(zoo.token_embedding_model(tmp_path / "emb.onnx")))  # ends in a ReduceMean
    assert class_score_outputs(classifier) == {"output"}
    assert class_score_outputs(embedding) == set()
    vectors = RNG.standard_normal((4, 8)).astype(np.float32)
    assert compare(vectors, vectors, "output", class_scores=False).top1_agreement is None


def test_probabilities_an_ulp_above_one_still_get_decision_agreement() -> None:
    """ONNX Runtime's Sigmoid gives 1.0000001 on a real OCR detector (ppocrv4-det): still a probability map."""
    reference = np.random.default_rng(0).random((4, 64)).astype(np.float32)
    reference[0, 0] = np.float32(1.0000001)
    found = compare(reference, reference, "prob")
    assert found.decision_agreement == 1.0 and found.decision_threshold == 0.5
