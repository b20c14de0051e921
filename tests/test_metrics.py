"""Task metrics: hand-checked values, bootstrap coverage, paired vs unpaired intervals, user metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import CalibrationError, ConfigError, UserCodeError
from edgeopt.evaluate.metrics import (
    EvalSet,
    Resamples,
    bootstrap_interval,
    default_metrics,
    evaluate,
    load_eval_set,
    paired_delta,
    parse_metric,
)


def per_sample_scores(outputs: list[np.ndarray]) -> np.ndarray:
    """Breaks the contract: takes one argument, so calling it as documented raises."""
    return outputs[0]


def user_metric(outputs: list[np.ndarray], targets: np.ndarray | None) -> np.ndarray:
    """Share of each sample's logits above zero: a made-up per-sample score."""
    return np.mean(outputs[0].reshape(len(outputs[0]), -1) > 0, axis=1)


def one_score(outputs: list[np.ndarray], targets: np.ndarray | None) -> float:
    """Breaks the contract: one score for the whole set, not one per sample."""
    return float(np.mean(outputs[0]))


def lower_is_better(outputs: list[np.ndarray], targets: np.ndarray | None) -> np.ndarray:
    return np.abs(outputs[0].reshape(len(outputs[0]), -1)).sum(axis=1)


lower_is_better.higher_is_better = False  # type: ignore[attr-defined]


def _score(name: str, outputs: np.ndarray, truth: np.ndarray | None = None,
           reference: np.ndarray | None = None) -> np.ndarray:
    spec = parse_metric(name)
    return spec.score([outputs], truth, None if reference is None else [reference])


def test_topk_hand_checked() -> None:
    logits = np.array([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # argmax 1
                       [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],   # ranks 0,1,2,3,4 then 5
                       [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])  # argmax 5; ties among the rest
    labels = np.array([1, 5, 0])
    assert _score("top1", logits, labels).tolist() == [1.0, 0.0, 0.0]
    assert _score("top5", logits, labels).tolist() == [1.0, 0.0, 1.0]  # sample 3: 5, then 0,1,2,3 (stable)


def test_regression_hand_checked() -> None:
    predicted = np.array([[1.0, 2.0], [0.0, 0.0]])
    targets = np.array([[1.0, 4.0], [3.0, -1.0]])
    assert _score("mae", predicted, targets).tolist() == [1.0, 2.0]
    assert _score("rmse", predicted, targets).tolist() == [2.0, 5.0]  # per-sample mean squared error
    spec = parse_metric("rmse")
    results, problems = evaluate([spec], [predicted], targets, None)
    assert not problems and results[0].value == pytest.approx(np.sqrt(3.5))  # sqrt((0+4+9+1)/4)
    assert not results[0].higher_is_better


def test_embedding_metrics_hand_checked() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    variant = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    cos = _score("cosine_to_fp32", variant, None, reference)
    np.testing.assert_allclose(cos, [1.0, np.sqrt(0.5), -1.0])
    # fp32 neighbours (cosine): 0 -> 2, 1 -> 2, 2 -> 0 (tie with 1: lower index); the variant's: 0 -> 1, 1 -> 0, 2 -> 0
    agreement = _score("retrieval_agreement@1", variant, None, reference)
    assert agreement.tolist() == [0.0, 0.0, 1.0]
    assert parse_metric("retrieval_agreement").name == "retrieval_agreement@5"


def test_metric_results_carry_paired_delta() -> None:
    labels = np.array([0, 1, 1, 0])
    fp32 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # 3/4 right
    int8 = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # 2/4 right
    results, _ = evaluate([parse_metric("top1"), parse_metric("cosine_to_fp32")], [int8], labels, [fp32])
    top1, cosine = results
    assert (top1.value, top1.delta) == (0.5, -0.25)
    assert top1.delta_lower <= -0.25 <= top1.delta_upper  # type: ignore[operator]
    assert cosine.value == pytest.approx(0.75) and cosine.delta == pytest.approx(-0.25)
    assert "paired" in top1.interval and "bootstrap" in top1.interval


def test_bootstrap_interval_covers_the_truth_in_simulation() -> None:
    rng = np.random.default_rng(1)
    truth, n, trials = 0.8, 200, 200
    resamples = Resamples(n, resamples=1000)
    covered = 0
    for _ in range(trials):
        scores = (rng.random(n) < truth).astype(float)
        _, lower, upper = bootstrap_interval(scores, resamples=resamples)
        covered += lower <= truth <= upper
    assert 0.89 <= covered / trials <= 0.99  # nominal 95 %; percentile bootstrap runs a little narrow


def test_bootstrap_is_seeded() -> None:
    scores = np.random.default_rng(3).random(50)
    assert bootstrap_interval(scores) == bootstrap_interval(scores)


def test_paired_interval_is_narrower_than_unpaired_on_correlated_data() -> None:
    rng = np.random.default_rng(2)
    difficulty = rng.normal(size=300)
    reference = difficulty + rng.normal(scale=0.1, size=300)
    variant = difficulty + 0.05 + rng.normal(scale=0.1, size=300)
    _, lo, hi = paired_delta(variant, reference)
    # unpaired: each mean resampled on its own, the difference of independent resamples
    a = Resamples(300, seed=1).stats(lambda rows: variant[rows].mean(axis=1))
    b = Resamples(300, seed=2).stats(lambda rows: reference[rows].mean(axis=1))
    u_lo, u_hi = np.quantile(a - b, [0.025, 0.975])
    assert (hi - lo) < 0.5 * (u_hi - u_lo)
    assert lo < 0.05 < hi


def test_user_metric_contract() -> None:
    spec = parse_metric("tests.test_metrics:user_metric")
    outputs = np.array([[1.0, -1.0], [1.0, 1.0]])
    results, problems = evaluate([spec], [outputs], None, [outputs])
    assert not problems and results[0].value == 0.75 and results[0].delta == 0.0
    assert not parse_metric("tests.test_metrics:lower_is_better").higher_is_better


@pytest.mark.parametrize("reference, words", [
    ("no_such_package_xyz.mod:fn", "cannot import module"),
    ("tests.test_metrics:missing", "has no attribute"),
    ("nonsense", "unknown metric"),
    ("retrieval_agreement@x", "retrieval_agreement@K"),
])
def test_bad_metric_names_are_config_errors(reference: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        parse_metric(reference)
    assert reference in str(info.value)


def test_user_metric_that_raises_is_the_users_error_naming_it() -> None:
    """A metric that fails judges nothing: exit 3 naming the entry point and its frame, not a row without it."""
    spec = parse_metric("tests.test_metrics:per_sample_scores")  # wrong arity: it raises inside
    with pytest.raises(UserCodeError, match=r"--metric tests.test_metrics:per_sample_scores: your metric raised "
                                            r"TypeError: per_sample_scores\(\) takes 1 positional argument"):
        evaluate([spec], [np.zeros((3, 2))], None, None)


def test_user_metric_returning_the_wrong_shape_is_the_users_error() -> None:
    """Left out, the metric's budget would go unjudged: exit 3 instead."""
    spec = parse_metric("tests.test_metrics:one_score")
    with pytest.raises(UserCodeError, match=r"--metric tests.test_metrics:one_score: your metric must return 3 "
                                            r"per-sample scores \(one per eval sample\), got shape \(\)"):
        evaluate([spec], [np.zeros((3, 2))], None, None)


def test_eval_files(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "cls.npz", images=images, labels=np.arange(6))
    np.savez(tmp_path / "reg.npz", images=images, targets=np.ones((6, 2)))
    np.savez(tmp_path / "emb.npz", images=images)
    np.savez(tmp_path / "bad.npz", images=images, targets=np.ones(5))
    assert default_metrics(load_eval_set(tmp_path / "cls.npz")) == ("top1",)
    assert default_metrics(load_eval_set(tmp_path / "reg.npz")) == ("mae",)
    assert default_metrics(load_eval_set(tmp_path / "emb.npz")) == ("cosine_to_fp32",)
    with pytest.raises(CalibrationError, match="targets"):
        load_eval_set(tmp_path / "bad.npz")
    assert isinstance(load_eval_set(tmp_path / "cls.npz"), EvalSet)


def test_scores_come_from_the_first_float_output() -> None:
    from edgeopt.evaluate.metrics import _logits

    ids = np.arange(6, dtype=np.int64).reshape(2, 3)  # a transformer's pass-through token ids come first
    embedding = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    np.testing.assert_array_equal(_logits([ids, embedding]), embedding.astype(np.float64))
    np.testing.assert_array_equal(_logits([ids]), ids.astype(np.float64))  # no float output: the first


def test_labels_must_be_class_indices_of_the_model(tmp_path: Path) -> None:
    """Labels -1 ... -976 used to score top-1 0 % and pass; labels past the classes likewise (issue 12, item 9)."""
    from edgeopt.evaluate.fidelity import top1_accuracy
    from edgeopt.evaluate.metrics import check_metrics
    from edgeopt.models.input_spec import InputSpec

    images = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "negative.npz", images=images, labels=-(np.arange(6) * 25 + 1))
    with pytest.raises(CalibrationError, match=r"negative\.npz: array 'labels': 6 of 6 label\(s\) negative"):
        load_eval_set(tmp_path / "negative.npz")  # before anything runs: no model needed
    np.savez(tmp_path / "past.npz", images=images, labels=np.arange(6) + 10)
    eval_set = load_eval_set(tmp_path / "past.npz")
    outputs = [InputSpec("ids", (1, 3), "int64"), InputSpec("logits", (1, 10), "float32")]
    with pytest.raises(CalibrationError, match=r"past\.npz: array 'labels': 6 of 6 label\(s\) outside 0\.\.9"):
        check_metrics([parse_metric("top1")], eval_set, outputs)  # before anything runs, given the model
    check_metrics([parse_metric("top1")], eval_set, [InputSpec("logits", (1, "classes"), "float32")])  # symbolic
    check_metrics([parse_metric("mae")], eval_set, outputs)  # labels as regression targets: not class indices
    logits = np.random.default_rng(1).standard_normal((6, 10))
    with pytest.raises(CalibrationError, match=r"past\.npz: .*outside 0\.\.9 \(smallest 10, largest 15\)"):
        _score("top1", logits, eval_set.truth)  # when scored: the file is still named
    assert _score("top1", logits, eval_set.truth - 10).shape == (6,)
    np.savez(tmp_path / "outputs.npz", out0=logits)
    with pytest.raises(ValueError, match="outside 0..9"):  # the legacy accuracy is left out, never 0 %
        top1_accuracy(tmp_path / "outputs.npz", eval_set.truth)  # type: ignore[arg-type]


def test_resamples_of_a_small_set_are_the_one_seeded_matrix() -> None:
    (chunk,) = list(Resamples(300).chunks())
    assert np.array_equal(chunk, np.random.default_rng(0).integers(0, 300, size=(2000, 300)))


def test_resamples_of_a_huge_eval_set_come_in_bounded_chunks() -> None:
    """A 1 M-sample eval set: 2000 resamples as one matrix are 16 GiB; in chunks each is 16 rows (128 MiB)."""
    huge = Resamples(1_000_000, resamples=40)
    shapes = [chunk.shape for chunk in huge.chunks()]
    assert shapes == [(16, 1_000_000), (16, 1_000_000), (8, 1_000_000)]
    scores = np.random.default_rng(5).random(1_000_000)
    value, lower, upper = bootstrap_interval(scores, resamples=huge)
    assert lower <= value <= upper and upper - lower < 0.002
    assert np.array_equal(huge.stats(lambda rows: scores[rows].mean(axis=1)),
                          huge.stats(lambda rows: scores[rows].mean(axis=1)))  # seeded: the same resamples again
