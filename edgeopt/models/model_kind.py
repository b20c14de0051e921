"""What kind of network a graph is, as the quantizers' defaults need it: a transformer is a graph with attention,
a ``Softmax`` fed (through scaling, masking and reshapes) by a ``MatMul`` of two activations and feeding a
``MatMul`` itself.  Its MatMuls are where int8 pays and its other ops (LayerNorm, GELU, the Softmax) are where
int8 hurts, so ``int8-dynamic`` quantizes its MatMuls only, per channel, and NNCF gets ``ModelType.TRANSFORMER``.
And its output heads that every quantizer leaves in float (:func:`head_nodes`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import onnx

#: Ops an attention score passes through between its MatMul and its Softmax (or the Softmax and the next MatMul).
_PASS_THROUGH = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Reshape", "Transpose", "Cast", "Identity",
                           "Squeeze", "Unsqueeze", "Expand", "Sqrt"})
_DEPTH = 6  # ops followed from the Softmax each way


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            found[name].append(node)
    return found


def attention_softmaxes(graph: onnx.GraphProto) -> list[str]:
    """The names (or output tensors) of the Softmax nodes that sit between two MatMuls: the attention heads."""
    producers = {out: node for node in graph.node for out in node.output}
    consumers = _consumers(graph)
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


@dataclass(frozen=True)
class HeadNode:
    """A node left in float by every quantizer of a run, and why."""

    name: str
    op_type: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"node": self.name, "op_type": self.op_type, "reason": self.reason}


def head_nodes(model: onnx.ModelProto) -> list[HeadNode]:
    """The post-processing nodes int8 must not touch: a ``Concat`` whose output is (through reshapes) a graph
    output and whose inputs come from different producers kinds (a detector's box coordinates beside its
    class scores: one int8 scale for both rounds the scores to zero)."""
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    passing = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}

    def feeds_output(tensor: str, depth: int = 0) -> bool:
        if tensor in outputs:
            return True
        return depth <= 4 and any(feeds_output(o, depth + 1) for n in consumers.get(tensor, [])
                                  if n.op_type in passing for o in n.output)

    def kind(tensor: str, depth: int = 0) -> str:
        node = producers.get(tensor)
        if node is None or depth > 4:
            return "input"
        if node.op_type in passing:
            return kind(node.input[0], depth + 1)
        return node.op_type

    found = []
    for node in graph.node:
        if node.op_type != "Concat" or not feeds_output(node.output[0]):
            continue
        kinds = {kind(i) for i in node.input if i}
        if len(kinds) > 1:
            found.append(HeadNode(node.name or node.output[0], "Concat",
                                  f"joins {', '.join(sorted(kinds))} outputs into a model output: one int8 scale "
                                  "for values of different ranges"))
    return found
