"""A runtime's message as a row's reason: its first meaningful clause (no ``[ONNXRuntimeError]`` code, no model path,
no C++ source location), the whole text in ``run.log``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.errors import brief
from tests import profiles, zoo


def _bad_reshape(path: Path) -> Path:
    """Reshape [N, 4] to [3, -1]: fine for ONNX's checker and at load, fails when run (4 values are not 3 rows)."""
    shape = numpy_helper.from_array(np.array([3, -1], dtype=np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")], "bad_reshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B"])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _said(call: object) -> str:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - onnxruntime raises several unrelated types
        call()  # type: ignore[operator]
    return str(raised.value)


def test_real_onnx_runtime_messages_are_cut_to_what_a_user_can_act_on(tmp_path: Path) -> None:
    custom = zoo.custom_op_model(tmp_path / "a_long_folder_name_for_the_user_project_models" / "custom.onnx")
    load = _said(lambda: ort.InferenceSession(str(custom)))
    assert load.startswith("[ONNXRuntimeError]") and str(custom) in load
    assert brief(load) == "Fatal error: com.example:NoSuchOp(-1) is not a registered function/op"
    session = ort.InferenceSession(str(_bad_reshape(tmp_path / "bad.onnx")))
    run = _said(lambda: session.run(None, {"x": np.zeros((1, 4), np.float32)}))
    assert "onnxruntime" in run.split("Status Message:")[1] and len(run) > 250  # a source path and a signature
    assert brief(run) == ("node Reshape 'reshape': The input tensor cannot be reshaped to the requested shape. "
                          "Input shape:{1,4}, requested shape:{3,-1}")
    assert brief("x" * 500).endswith(" ...") and len(brief("x" * 500)) <= 200


def test_a_row_says_the_runtimes_reason_briefly_and_run_log_keeps_all_of_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(_bad_reshape(tmp_path / "bad.onnx")),
                           "--profile", str(profiles.write_profile(tmp_path, "fast")), "--out", str(out),
                           "--variant", "fp32"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stderr
    (row,) = json.loads((out / "summary.json").read_text())["rows"]
    assert row["failure"] == ("variant fp32: ONNX Runtime cannot run the result: node Reshape 'reshape': The input "
                              "tensor cannot be reshaped to the requested shape. Input shape:{1,4}, requested "
                              "shape:{3,-1}"), row
    assert "onnxruntime_src" not in done.stdout + done.stderr
    kept = (out / "run.log").read_text()
    assert "variant fp32: ONNX Runtime said: [ONNXRuntimeError]" in kept and "reshape_helper.h" in kept
