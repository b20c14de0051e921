"""A tiny model zoo built in code with ``onnx.helper``: each builder writes one ONNX file in milliseconds.

Every node is named (quantizer exclusions and error messages refer to node names).  Weights come
from a seeded generator, so a builder writes the same bytes every time.  The hand-computed facts
the graph tests check (parameter count, MACs) sit beside the model they describe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeopt.core.host import host_fingerprint, int8_pair_sums_saturate

OPSET = 17
IR_VERSION = 8
PRODUCER = "edgeopt-tests"

# tiny_conv_model: Conv(3->8, 3x3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(8->10)
CONV_INPUT_SHAPE = (1, 3, 16, 16)
CONV_OUTPUT_SHAPE = (1, 10)
CONV_PARAMETERS = 8 * 3 * 3 * 3 + 8 + 10 * 8 + 10  # conv weight + bias, gemm weight + bias = 314
CONV_MACS = (1 * 8 * 16 * 16) * (3 * 3 * 3) + (1 * 10) * 8  # conv: out elements x (Cin*kH*kW); gemm: M*N*K


def int8_cosine_floor() -> float:
    """The INT8-vs-fp32 cosine floor for the tiny models on *this* host's CPU class.

    0.98 where int8 products accumulate in 32 bits (VNNI, AMX, ARM dot product); 0.93 where
    ``VPMADDUBSW``'s 16-bit pair sums can saturate (x86 without VNNI): tiny_conv's S8S8 variant
    measured cosine 0.957 on a Zen 3 (AVX2 only), 0.99+ on a Zen 4 (AVX-512 VNNI).
    """
    return 0.93 if int8_pair_sums_saturate(host_fingerprint()) else 0.98


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def _save(graph: onnx.GraphProto, path: Path, *, opsets: dict[str, int] | None = None) -> Path:
    imports = [helper.make_opsetid("", OPSET)]
    imports += [helper.make_opsetid(domain, version) for domain, version in (opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name=PRODUCER, ir_version=IR_VERSION)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _float_input(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def tiny_conv_model(path: Path) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm; input 'input' float32 [1,3,16,16] -> [1,10]."""
    rng = _rng(0)
    inits = [
        _init("conv.weight", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3),
        _init("conv.bias", rng.standard_normal(8).astype(np.float32) * 0.1),
        _init("fc.weight", rng.standard_normal((10, 8)).astype(np.float32) * 0.3),
        _init("fc.bias", rng.standard_normal(10).astype(np.float32) * 0.1),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "conv.weight", "conv.bias"],
            ["conv_out"],
            name="conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu_out"], ["pool_out"], name="pool"),
        helper.make_node("Flatten", ["pool_out"], ["flat_out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_conv",
        [_float_input("input", CONV_INPUT_SHAPE)],
        [_float_input("output", CONV_OUTPUT_SHAPE)],
        inits,
    )
    return _save(graph, path)


def tiny_mlp(path: Path) -> Path:
    """MatMul(16->32) + bias -> Relu -> MatMul(32->4); input 'input' float32 [1,16]."""
    rng = _rng(1)
    inits = [
        _init("w1", rng.standard_normal((16, 32)).astype(np.float32) * 0.25),
        _init("b1", rng.standard_normal(32).astype(np.float32) * 0.1),
        _init("w2", rng.standard_normal((32, 4)).astype(np.float32) * 0.25),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["mm1"], name="mm1"),
        helper.make_node("Add", ["mm1", "b1"], ["add1"], name="add1"),
        helper.make_node("Relu", ["add1"], ["relu1"], name="relu1"),
        helper.make_node("MatMul", ["relu1", "w2"], ["output"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_mlp", [_float_input("input", (1, 16))], [_float_input("output", (1, 4))], inits
    )
    return _save(graph, path)


def identity_add(path: Path) -> Path:
    """A near-empty model: output = input + 1 (one Add node), input 'input' float32 [1,4]."""
    inits = [_init("one", np.ones(4, dtype=np.float32))]
    nodes = [helper.make_node("Add", ["input", "one"], ["output"], name="add")]
    graph = helper.make_graph(
        nodes, "identity_add", [_float_input("input", (1, 4))], [_float_input("output", (1, 4))], inits
    )
    return _save(graph, path)


def custom_op_model(path: Path) -> Path:
    """A node ``com.example::NoSuchOp`` that no ONNX Runtime build implements."""
    nodes = [
        helper.make_node("Relu", ["input"], ["relu_out"], name="relu"),
        helper.make_node("NoSuchOp", ["relu_out"], ["output"], name="mystery", domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes, "custom_op", [_float_input("input", (1, 4))], [_float_input("output", (1, 4))]
    )
    return _save(graph, path, opsets={"com.example": 1})


def nan_activation_model(path: Path) -> Path:
    """Sqrt of a negative number: the 'sqrt_out' activation (node 'sqrt') is NaN and feeds a MatMul."""
    rng = _rng(2)
    inits = [_init("w", rng.standard_normal((8, 4)).astype(np.float32))]
    nodes = [
        helper.make_node("Abs", ["input"], ["abs_out"], name="abs"),
        helper.make_node("Neg", ["abs_out"], ["neg_out"], name="neg"),
        helper.make_node("Sqrt", ["neg_out"], ["sqrt_out"], name="sqrt"),
        helper.make_node("MatMul", ["sqrt_out", "w"], ["output"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes, "nan_activation", [_float_input("input", (1, 8))], [_float_input("output", (1, 4))], inits
    )
    return _save(graph, path)


def empty_tensor_model(path: Path) -> Path:
    """A Slice making zero elements ('empty_out', node 'slice_empty') concatenated before a MatMul."""
    rng = _rng(3)
    inits = [
        _init("starts", np.array([0], dtype=np.int64)),
        _init("ends", np.array([0], dtype=np.int64)),
        _init("axes", np.array([1], dtype=np.int64)),
        _init("w", rng.standard_normal((8, 4)).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["empty_out"], name="slice_empty"),
        helper.make_node("Concat", ["input", "empty_out"], ["concat_out"], name="concat", axis=1),
        helper.make_node("MatMul", ["concat_out", "w"], ["output"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes, "empty_tensor", [_float_input("input", (1, 8))], [_float_input("output", (1, 4))], inits
    )
    return _save(graph, path)


MASKED_TENSOR = "masked_scores"
MASK_NODE = "add_mask"


def huge_mask_model(path: Path) -> Path:
    """Attention-style additive mask: scores + mask(-FLT_MAX on padding) -> Softmax -> MatMul.

    The 'masked_scores' activation (node 'add_mask') spans about -3.4e38, which a static quantizer
    must not turn into an activation scale (FIELD_NOTES).
    """
    rng = _rng(4)
    mask = np.zeros((1, 1, 8), dtype=np.float32)
    mask[..., 6:] = np.finfo(np.float32).min
    inits = [
        _init("mask", mask),
        _init("w", rng.standard_normal((8, 8)).astype(np.float32) * 0.3),
    ]
    nodes = [
        helper.make_node("Add", ["input", "mask"], [MASKED_TENSOR], name=MASK_NODE),
        helper.make_node("Softmax", [MASKED_TENSOR], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "w"], ["output"], name="matmul"),
    ]
    graph = helper.make_graph(
        nodes, "huge_mask", [_float_input("input", (1, 4, 8))], [_float_input("output", (1, 4, 8))], inits
    )
    return _save(graph, path)


EXTERNAL_WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 16.0


def external_data_model(directory: Path, location: str, *, write_data: bool = True) -> Path:
    """``directory/model.onnx`` whose initializer 'w' lives in external data at ``location`` (any string).

    With ``write_data`` the bytes are written where ``location`` points (relative to ``directory``,
    or as is when absolute), so a refusal is about the location, never about a missing file.
    Writing follows symlinks, which lets a test plant the data behind a link.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensor = _init("w", EXTERNAL_WEIGHT)
    data = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("MatMul", ["input", "w"], ["output"], name="matmul")]
    graph = helper.make_graph(
        nodes, "external_data", [_float_input("input", (1, 4))], [_float_input("output", (1, 4))], [tensor]
    )
    if write_data:
        target = Path(location) if Path(location).is_absolute() else directory / location
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return _save(graph, directory / "model.onnx")


def if_dynamic_rank_model(path: Path) -> Path:
    """An ``If`` on a scalar bool input whose branches return different ranks (2-D vs flattened).

    ONNX Runtime runs it; OpenVINO's CPU plugin refuses an ``If`` with a dynamic output rank.
    """
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    then_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["then_y"], name="then_identity")], "then",
                                   [], [helper.make_tensor_value_info("then_y", TensorProto.FLOAT, None)])
    flat = helper.make_tensor("flat", TensorProto.INT64, [1], [-1])
    else_graph = helper.make_graph([helper.make_node("Reshape", ["x", "flat"], ["else_y"], name="else_reshape")],
                                   "else", [], [helper.make_tensor_value_info("else_y", TensorProto.FLOAT, None)],
                                   [flat])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph, name="if_rank")
    # the graph output declares one unknown dimension (onnx.checker needs a shape there); the If
    # itself still yields rank 2 or 1 depending on ``cond``
    graph = helper.make_graph([node], "if_dynamic_rank", [x, cond],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    return _save(graph, path)


def if_branch_initializers_model(path: Path) -> Path:
    """An ``If`` whose two branches each hold an initializer named ``w`` (different values), shadowing the main
    graph's own ``w``: how ONNX Runtime's optimiser saves a graph whose branches read one outer weight
    (silero-vad v4 after pre-processing).  x [1, 4] float, cond scalar bool -> y [1, 4]."""
    rng = _rng(11)

    def branch(name: str, scale: float) -> onnx.GraphProto:
        weight = _init("w", (rng.standard_normal((4, 4)) * scale).astype(np.float32))
        return helper.make_graph([helper.make_node("MatMul", ["x", "w"], [f"{name}_y"], name=f"{name}_matmul")],
                                 name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 4])],
                                 [weight])

    node = helper.make_node("If", ["cond"], ["branch_y"], then_branch=branch("then", 1.0),
                            else_branch=branch("else", 3.0), name="if_weights")
    outer = helper.make_node("Add", ["branch_y", "w"], ["y"], name="add_outer")
    graph = helper.make_graph([node, outer], "if_branch_initializers",
                              [_float_input("x", (1, 4)), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [_init("w", rng.standard_normal((1, 4)).astype(np.float32))])
    return _save(graph, path)


# token_embedding_model: Gather(table[50, 8], Cast(ids)) -> ReduceMean over tokens; ids int64 [batch, seq]
EMBEDDING_VOCAB = 50


def token_embedding_model(path: Path) -> Path:
    """A sentence-embedding-shaped model: int64 token ids [batch, seq] index a 50-row table; float [batch, 8] out."""
    table = _init("embedding.weight", _rng(3).standard_normal((EMBEDDING_VOCAB, 8)).astype(np.float32))
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids32"], name="cast", to=TensorProto.INT32),
        helper.make_node("Gather", ["embedding.weight", "ids32"], ["tokens"], name="gather", axis=0),
        helper.make_node("ReduceMean", ["tokens"], ["output"], name="mean", axes=[1], keepdims=0),  # opset 17
    ]
    graph = helper.make_graph(
        nodes, "token_embedding",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 8])],
        [table],
    )
    return _save(graph, path)


def dynamic_conv_model(path: Path) -> Path:
    """tiny_conv_model with symbolic batch, height and width: input 'input' float32 [N, 3, H, W] -> [N, 10]."""
    model = onnx.load(str(tiny_conv_model(path)))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("N", None, "H", "W"), strict=True):
        if name is not None:
            dim.ClearField("dim_value")
            dim.dim_param = name
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(model, str(path))
    return path
