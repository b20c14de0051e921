"""What kind of network a graph is, as the quantizers' defaults need it: a transformer is a graph with attention,
a ``Softmax`` fed (through scaling, masking and reshapes) by a ``MatMul`` of two activations and feeding a
``MatMul`` itself.  Its MatMuls are where int8 pays and its other ops (LayerNorm, GELU, the Softmax) are where
int8 hurts, so ``int8-dynamic`` quantizes its MatMuls only, per channel, and NNCF gets ``ModelType.TRANSFORMER``.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

#: Ops an attention score passes through between its MatMul and its Softmax (or the Softmax and the next MatMul).
_PASS_THROUGH = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Reshape", "Transpose", "Cast", "Identity",
                           "Squeeze", "Unsqueeze", "Expand", "Sqrt"})
_DEPTH = 6  # ops followed from the Softmax each way


def attention_softmaxes(graph: onnx.GraphProto) -> list[str]:
    """The names (or output tensors) of the Softmax nodes that sit between two MatMuls: the attention heads."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    constant = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}

    def reaches_matmul_up(tensor: str, depth: int) -> bool:
        node = producers.get(tensor)
        if node is None or depth > _DEPTH:
            return False
        if node.op_type in ("MatMul", "Einsum"):  # scores: a product of two activations, no weight
            return sum(1 for i in node.input if i and i not in constant) == 2
        return node.op_type in _PASS_THROUGH and any(reaches_matmul_up(i, depth + 1) for i in node.input[:1])

    def reaches_matmul_down(tensor: str, depth: int) -> bool:
        if depth > _DEPTH:
            return False
        for node in consumers.get(tensor, []):
            if node.op_type in ("MatMul", "Einsum"):
                return True
            if node.op_type in _PASS_THROUGH and any(reaches_matmul_down(o, depth + 1) for o in node.output):
                return True
        return False

    return [node.name or node.output[0] for node in graph.node
            if node.op_type == "Softmax" and reaches_matmul_up(node.input[0], 0)
            and reaches_matmul_down(node.output[0], 0)]


def is_transformer(model: onnx.ModelProto) -> bool:
    """Whether ``model``'s main graph has attention (:func:`attention_softmaxes`)."""
    return bool(attention_softmaxes(model.graph))
