"""Fidelity per slice: an output that concatenates values of different sizes (a detector's box coordinates in
pixels and class scores in [0, 1]) is also compared slice by slice, and a variant that lost a slice fails,
whatever its whole-tensor cosine."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.core.fileio import dumps_json
from edgeopt.evaluate.fidelity import OutputFidelity, compare, worst
from edgeopt.evaluate.gate import GateResult, Verdict, judge_outputs
from edgeopt.models.calibration import CalibrationSet
from edgeopt.models.graph import class_score_outputs
from edgeopt.models.quantize import make_variant
from edgeopt.models.recipes import Recipe
from edgeopt.profiles.schema import load_profile
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests.profiles import write_profile

SHIPPED = {k: v for k, v in load_profile("host-cpu").budgets.model_dump().items() if v is not None}
ANCHORS, SAMPLES = 16, 8
SCORE_LOGIT_MAX = 1.5581  # sigmoid: 0.826, the largest class score of the field case


def _gate() -> GateResult:
    return GateResult(variant="int8", profile="host-cpu", checks=(), host_matches=True, proxy=False)


def _run(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, feed)[0] for feed in feeds])


def _qdq(tensor: str, out: str, scale: float, nodes: list[onnx.NodeProto], inits: list[TensorProto]) -> None:
    """Quantize ``tensor`` to int8 with ``scale`` and back (``out``), as a static INT8 variant does."""
    inits += [numpy_helper.from_array(np.array(scale, np.float32), f"{out}_scale"),
              numpy_helper.from_array(np.array(0, np.int8), f"{out}_zero")]
    nodes += [helper.make_node("QuantizeLinear", [tensor, f"{out}_scale", f"{out}_zero"], [f"{out}_q"]),
              helper.make_node("DequantizeLinear", [f"{out}_q", f"{out}_scale", f"{out}_zero"], [out])]


def _box_score_head(path: Path, *, concat_scale: float | None = None, scores_scale: float | None = None) -> Path:
    """A hand-built detector head: ``x [1, 84, N]`` split into 4 box and 80 class rows; boxes = sigmoid * 320,
    scores = sigmoid; concatenated into ``output0 [1, 84, N]``.  ``concat_scale``: the concatenated tensor
    quantized with that one scale (the field case: 2.54); ``scores_scale``: the scores quantized on their own."""
    inits = [numpy_helper.from_array(np.array([4, 80], np.int64), "sizes"),
             numpy_helper.from_array(np.array(320.0, np.float32), "pixels")]
    nodes = [helper.make_node("Split", ["x", "sizes"], ["raw_boxes", "raw_scores"], axis=1),
             helper.make_node("Sigmoid", ["raw_boxes"], ["unit_boxes"]),
             helper.make_node("Mul", ["unit_boxes", "pixels"], ["boxes"]),
             helper.make_node("Sigmoid", ["raw_scores"], ["scores_fp32"])]
    scores = "scores_fp32"
    if scores_scale is not None:
        _qdq(scores, "scores_kept", scores_scale, nodes, inits)
        scores = "scores_kept"
    joined = "output0" if concat_scale is None else "joined"
    nodes.append(helper.make_node("Concat", ["boxes", scores], [joined], axis=1))
    if concat_scale is not None:
        _qdq(joined, "output0", concat_scale, nodes, inits)
    graph = helper.make_graph(nodes, "box_score_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 84, ANCHORS])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, ANCHORS])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _head_inputs() -> list[dict[str, np.ndarray]]:
    """Box logits anywhere, class logits mostly low (scores near 0) with one score of 0.826 in the first sample."""
    rng = np.random.default_rng(3)
    feeds = []
    for i in range(SAMPLES):
        x = np.concatenate([rng.normal(0, 2, (1, 4, ANCHORS)),
                            np.clip(rng.normal(-3, 1.5, (1, 80, ANCHORS)), -9, SCORE_LOGIT_MAX - 0.1)], axis=1)
        if i == 0:
            x[0, 10, 3] = SCORE_LOGIT_MAX
        feeds.append({"x": x.astype(np.float32)})
    return feeds


def test_one_scale_for_boxes_and_scores_loses_every_score_and_fails_with_the_slice(tmp_path: Path) -> None:
    feeds = _head_inputs()
    fp32 = _run(_box_score_head(tmp_path / "fp32.onnx"), feeds)
    collapsed = _run(_box_score_head(tmp_path / "int8.onnx", concat_scale=2.54), feeds)
    assert float(fp32[:, :, 4:].max()) == pytest.approx(0.826, abs=1e-3) and float(collapsed[:, :, 4:].max()) == 0.0
    found = compare(fp32, collapsed, "output0", class_scores=False)
    assert found.cosine is not None and found.cosine > 0.95  # the coordinates carry the whole-tensor cosine
    assert [(s.axis, s.start, s.stop) for s in found.slices] == [(1, 0, 4), (1, 4, 84)]
    (lost,) = found.lost_slices
    assert lost.loss("output0") == "slice 4:84 of output0 (range 0–0.83) lost: max 0.0"
    judged = judge_outputs(_gate(), SHIPPED, [found])
    assert judged.verdict is Verdict.FAIL
    failed = {c.metric: c.sentence for c in judged.checks if c.verdict is Verdict.FAIL}
    assert failed["min_cosine"] == ("cosine vs fp32: slice 4:84 of output0 (range 0–0.83) lost: max 0.0; "
                                    "fails floor 0.95 on host-cpu")
    assert "min_decision_agreement" in failed  # the scores' own decision floor fails with the same reason
    assert worst([found])["cosine"] == 0.0 and found.headline() == ("cos", 0.0)  # what the table shows

    kept = compare(fp32, _run(_box_score_head(tmp_path / "kept.onnx", scores_scale=1 / 127), feeds), "output0",
                   class_scores=False)
    assert not kept.lost_slices and min(s.cosine or 0.0 for s in kept.slices) > 0.95
    assert judge_outputs(_gate(), SHIPPED, [kept]).verdict is Verdict.PASS


def _yolo_head(path: Path) -> Path:
    """A YOLOv8-style detection head (seeded random weights) exported from PyTorch: Conv-BN-SiLU blocks down to
    stride 32, the Detect head's box branch (4 x 16-bin distributions, DFL, anchor-relative distances scaled to
    pixels) and class branch (80 sigmoid scores), concatenated into ``output0 [1, 84, 64]`` as YOLOv8 exports."""
    import torch
    from torch import nn

    class Conv(nn.Module):  # YOLOv8's Conv: Conv2d, BatchNorm2d, SiLU
        def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
            self.bn, self.act = nn.BatchNorm2d(c_out), nn.SiLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.bn(self.conv(x)))

    class Detector(nn.Module):
        def __init__(self, classes: int = 80, bins: int = 16, size: int = 256, stride: int = 32) -> None:
            super().__init__()
            self.bins, self.stride, self.classes = bins, stride, classes
            self.backbone = nn.Sequential(Conv(3, 8, 3, 2), Conv(8, 16, 3, 2), Conv(16, 16, 3, 2), Conv(16, 32, 3, 2),
                                          Conv(32, 32, 3, 2))
            self.box = nn.Sequential(Conv(32, 32), Conv(32, 32), nn.Conv2d(32, 4 * bins, 1))
            self.cls = nn.Sequential(Conv(32, 32), Conv(32, 32), nn.Conv2d(32, classes, 1))
            self.register_buffer("project", torch.arange(bins, dtype=torch.float32).view(1, 1, -1, 1))
            cells = torch.arange(size // stride) + 0.5
            ys, xs = torch.meshgrid(cells, cells, indexing="ij")
            self.register_buffer("anchors", torch.stack([xs.flatten(), ys.flatten()]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.backbone(x)
            n, _, h, w = features.shape
            distances = (self.box(features).view(n, 4, self.bins, h * w).softmax(2) * self.project).sum(2)  # DFL
            left_top, right_bottom = distances[:, :2], distances[:, 2:]
            centre = (self.anchors + (right_bottom - left_top) / 2) * self.stride
            size = (left_top + right_bottom) * self.stride
            scores = self.cls(features).view(n, self.classes, h * w).sigmoid()
            return torch.cat([centre, size, scores], 1)

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = Detector().eval()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight)  # keeps the activations' spread through the blocks
            model.cls[-1].bias.fill_(-2.0)
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice (it is 6x faster here)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (torch.zeros(1, 3, 256, 256),), str(path), input_names=["images"],
                              output_names=["output0"], dynamo=False, opset_version=17)
    finally:
        torch.random.set_rng_state(state)
    return path


def _by_hand_int8(model: Path, target: Path, samples: tuple[dict[str, np.ndarray], ...]) -> Path:
    """ONNX Runtime's quantize_static as a user runs it (QDQ, MinMax, every op it quantizes: the head's Concat too)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(model), str(target), Reader(), quant_format=QuantFormat.QDQ)
    return target


def test_a_yolo_style_heads_lost_scores_fail_and_edgeopt_keeps_the_head_in_float(tmp_path: Path) -> None:
    """Quantized by hand, one Concat scale rounds every class score to 0 and the gate fails it on the lost slice;
    edgeopt's int8-static leaves that output head's Concat in float (said in provenance), and the scores live."""
    model = _yolo_head(tmp_path / "detector.onnx")
    assert class_score_outputs(onnx.load(str(model))) == set()  # boxes + scores: not one class axis
    rng = np.random.default_rng(0)
    samples = tuple({"images": rng.standard_normal((1, 3, 256, 256)).astype(np.float32)} for _ in range(SAMPLES))
    calibration = CalibrationSet("random-detector", "tests: seeded random", samples)
    fp32, collapsed = _run(model, list(samples)), _run(_by_hand_int8(model, tmp_path / "by-hand.onnx", samples),
                                                       list(samples))
    assert float(collapsed[:, :, 4:].max()) == 0.0 < float(fp32[:, :, 4:].max())  # one scale rounded every score
    found = compare(fp32, collapsed, "output0", class_scores=False)
    assert found.cosine is not None and found.cosine > 0.95
    judged = judge_outputs(_gate(), SHIPPED, [found])
    assert judged.verdict is Verdict.FAIL, [c.sentence for c in judged.checks]
    cosine = next(c for c in judged.checks if c.metric == "min_cosine")
    assert cosine.verdict is Verdict.FAIL
    assert re.fullmatch(r"cosine vs fp32: slice 4:84 of output0 \(range [\d.]+–[\d.]+\) lost: max 0\.0; "
                        r"fails floor 0\.95 on host-cpu", cosine.sentence), cosine.sentence

    int8 = make_variant(model, Recipe.parse("int8-static-minmax"), tmp_path, calibration=calibration)
    assert any("output head Concat" in e["reason"] for e in int8.provenance["excluded"])
    kept_int8 = compare(fp32, _run(int8.path, list(samples)), "output0", class_scores=False)
    assert not kept_int8.lost_slices and float(_run(int8.path, list(samples))[:, :, 4:].max()) > 0

    fp16 = make_variant(model, Recipe.parse("fp16"), tmp_path, calibration=calibration)
    kept = compare(fp32, _run(fp16.path, list(samples)), "output0", class_scores=False)
    assert [(s.start, s.stop) for s in kept.slices] == [(0, 4), (4, 84)] and not kept.lost_slices
    assert judge_outputs(_gate(), SHIPPED, [kept]).verdict is Verdict.PASS


def test_a_lost_slice_fails_even_where_no_output_floor_is_set(tmp_path: Path) -> None:
    feeds = _head_inputs()
    found = compare(_run(_box_score_head(tmp_path / "fp32.onnx"), feeds),
                    _run(_box_score_head(tmp_path / "int8.onnx", concat_scale=2.54), feeds), "output0",
                    class_scores=False)
    (check,) = judge_outputs(_gate(), {"p95_ms": 10.0}, [found]).checks
    assert check.metric == "output_slices" and check.verdict is Verdict.FAIL
    assert check.sentence.startswith("outputs: slice 4:84 of output0 (range 0–0.83) lost: max 0.0; fails the rule")
    only_top1 = judge_outputs(_gate(), {"min_top1_agreement": 0.9}, [found])
    assert [c.metric for c in only_top1.checks if c.verdict is Verdict.FAIL] == ["min_top1_agreement"]
    elsewhere = GateResult(variant="int8", profile="pi", checks=(), host_matches=False, proxy=False)
    assert judge_outputs(elsewhere, SHIPPED, [found]).verdict is Verdict.NOT_APPLICABLE


def test_slices_reach_summary_json_and_older_rows_still_load(tmp_path: Path) -> None:
    feeds = _head_inputs()
    found = compare(_run(_box_score_head(tmp_path / "fp32.onnx"), feeds),
                    _run(_box_score_head(tmp_path / "int8.onnx", concat_scale=2.54), feeds), "output0",
                    class_scores=False)
    restored = OutputFidelity.from_dict(json.loads(dumps_json(found.to_dict())))
    assert restored == found and restored.lost_slices[0].loss("output0").endswith("lost: max 0.0")
    older = {k: v for k, v in found.to_dict().items() if k not in ("slices", "top1_margin", "top1_undecided")}
    assert OutputFidelity.from_dict(older).slices == ()


def test_what_is_not_a_slice() -> None:
    rng = np.random.default_rng(1)
    # a class that never fires (scores ~1e-7) beside boxes and live scores joins the scores' slice
    head = np.concatenate([rng.uniform(0, 320, (8, 4, 32)), rng.uniform(0, 0.9, (8, 10, 32)),
                           rng.uniform(0, 1e-7, (8, 1, 32)), rng.uniform(0, 0.9, (8, 5, 32))], axis=1)
    assert [(s.start, s.stop) for s in compare(head, head, "y").slices] == [(0, 4), (4, 20)]
    # one level of sizes: no slices; sizes interleaved (more than 8 runs): no layout, no slices
    assert compare(rng.normal(0, 1, (8, 20, 32)), rng.normal(0, 1, (8, 20, 32)), "y").slices == ()
    interleaved = rng.normal(0, 1, (8, 20, 32)) * np.tile([100.0, 1.0], 10)[None, :, None]
    assert compare(interleaved, interleaved, "y").slices == ()


def test_a_quiet_region_of_a_probability_map_is_not_judged() -> None:
    # a text detector's probability map: rows without text hold ~1e-3, which any int8 scale rounds to 0
    rng = np.random.default_rng(2)
    probability = np.concatenate([rng.uniform(0, 2e-3, (4, 1, 8, 64)), rng.uniform(0, 0.99, (4, 1, 8, 64))], axis=2)
    rounded = np.round(probability * 255) / 255
    found = compare(probability, rounded, "maps", class_scores=False)
    quiet, text = found.slices
    assert (quiet.start, quiet.stop, quiet.judged, quiet.lost) == (0, 8, False, False)
    assert text.judged and not text.lost
    assert judge_outputs(_gate(), SHIPPED, [found]).verdict is Verdict.PASS


def test_a_run_fails_the_collapsed_variant_on_every_runtime_with_the_slice(tmp_path: Path) -> None:
    """``edgeopt run`` end to end: edgeopt's own int8-static-minmax quantizes the head's Concat output with one
    scale; its rows on ONNX Runtime and OpenVINO both fail with the slice, in the gates and summary.json."""
    model = _box_score_head(tmp_path / "head.onnx")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i, feed in enumerate(_head_inputs()):
        np.savez(calibration / f"{i:03d}.npz", **feed)
    (calibration / "manifest.yaml").write_text(
        "kind: arrays\nname: head\ndescription: detector head logits\nprovenance: generated\nlicence: CC0-1.0\n"
        f"inputs:\n  - name: x\n    dtype: float32\n    shape: [1, 84, {ANCHORS}]\n")
    runtime = "  native_precisions: [fp32, int8]\n  backends: [onnxruntime, openvino]\n  openvino_precisions: [fp32]"
    profile = write_profile(tmp_path, "quick", runtime=runtime, budgets="  p95_ms: 1000\n  min_cosine: 0.95")
    result = run_pipeline(RunConfig(model=str(model), profiles=(str(profile),), out_dir=tmp_path / "out",
                                    calibration=str(calibration), variants=("fp32", "int8-static-minmax"),
                                    min_calibration_samples=SAMPLES))
    assert result.exit_code == 1
    reason = "cosine vs fp32: slice 4:84 of output0 (range 0–0.83) lost: max 0.0; fails floor 0.95 on quick"
    measured = {m.variant_name for m in result.measurements if m.ok}
    int8_rows = [name for name in ("int8-static-minmax", "int8-static-minmax@openvino-fp32") if name in measured]
    assert "int8-static-minmax" in int8_rows
    summary = json.loads(result.summary_path.read_text())
    for gate in summary["gates"]:
        expected = "fail" if gate["variant"] in int8_rows else "pass"
        assert gate["verdict"] == expected, gate
        if expected == "fail":
            assert [c["sentence"] for c in gate["checks"] if c["metric"] == "min_cosine"] == [reason]
    row = next(r for r in summary["rows"] if r["variant"] == "int8-static-minmax")
    assert [(s["start"], s["stop"], s["lost"]) for s in row["fidelity"][0]["slices"]] == [(0, 4, False), (4, 84, True)]
