"""Is INT8 GEMM faster than FP32 GEMM on this CPU, at the kernel level?  ``python benchmarks/int8_gemm.py``

Times one ONNX Runtime node, single-threaded: ``MatMul`` fp32 vs ``MatMulInteger`` u8 x s8 (the U8S8 kernels
that QDQ Conv/MatMul reach on x86), N x N x N, alternating rounds, medians.  When the ratio is near 1, no INT8
variant of any model can be faster than fp32 on this CPU with ONNX Runtime, whatever the recipe: the bench
table's INT8 speed-up is then a property of the hardware, not of edgeopt's defaults.  No torch, no edgeopt.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def _session(op: str, x_type: int, y_type: int, weight: np.ndarray, n: int) -> ort.InferenceSession:
    graph = helper.make_graph([helper.make_node(op, ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", x_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _median_ms(session: ort.InferenceSession, feeds: dict[str, np.ndarray], calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        session.run(None, feeds)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="matrix size N (default: 512)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of 20 calls each (default: 5)")
    args = parser.parse_args()
    n, rng = args.n, np.random.default_rng(0)
    fp32 = _session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((n, n), np.float32), n)
    int8 = _session("MatMulInteger", TensorProto.UINT8, TensorProto.INT32,
                    rng.integers(-127, 128, (n, n)).astype(np.int8), n)
    feeds32 = {"x": rng.standard_normal((n, n), np.float32)}
    feeds8 = {"x": rng.integers(0, 256, (n, n)).astype(np.uint8)}
    for session, feeds in ((fp32, feeds32), (int8, feeds8)):
        _median_ms(session, feeds, 5)  # warm-up
    a, b = [], []
    for _ in range(args.rounds):
        a.append(_median_ms(fp32, feeds32, 20))
        b.append(_median_ms(int8, feeds8, 20))
    f, i = float(np.median(a)), float(np.median(b))
    ops = 2 * n**3
    print(f"{platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, 1 thread, N={n}: "
          f"fp32 MatMul {f:.2f} ms ({ops / f / 1e6:.1f} GFLOP/s), u8s8 MatMulInteger {i:.2f} ms "
          f"({ops / i / 1e6:.1f} GOP/s): INT8/FP32 speed {f / i:.2f}x")


if __name__ == "__main__":
    main()
