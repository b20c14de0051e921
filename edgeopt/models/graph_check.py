"""``onnx.checker`` as edgeopt runs it: on a skeleton of the model, its refusals said in one line that names the
node and tensor, and the one refusal it repairs, nodes out of topological order.

Skeleton: the checker and shape inference need the graph, not the weights.  :func:`skeleton` is a copy of the
model whose large initializers (over :data:`SKELETON_KEEP_ELEMENTS`, or held in external data) are typed graph
inputs instead, so that checking or inferring shapes of a 100 MB model costs what a 1 MB one does (the weights
are not serialized to the checker and back), external data need not be loaded, and a model over protobuf's
2 GiB limit can be checked at all.  Small initializers stay: shape inference reads their values (a ``Reshape``'s
target shape).  What the checker would see of the weights themselves, the tensors' type and dims, is kept.

Order: ONNX Runtime runs a graph whose nodes are not topologically sorted; ``onnx.checker`` refuses it ("Nodes
in a graph must be topologically sorted", cut at "of node:" by a first-line reader).  A real segmentation
model's export did this.  :func:`check_repairing` sorts such a graph in place (a stable topological sort, the
graphs inside ``If``/``Loop``/``Scan`` too: :func:`edgeopt.models.subgraphs.sort_nodes`) and reports the repair
("nodes sorted topologically: N of M out of order"); a graph that no order can fix (a cycle, a tensor nothing
produces) is refused like any other.

Refusals: :func:`refusal` turns a checker error into a :class:`Refusal`: the checker's first statement whole, on
one line (its own text breaks lines inside a node's description), the node (name or ``#index``, and op) and
tensor it is about, and what to do about the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import onnx
from onnx import external_data_helper

from edgeopt.models.subgraphs import _outer_reads, all_nodes, sort_nodes, subgraphs

#: Initializers of up to this many elements stay in a skeleton (shape inference may read their values).
SKELETON_KEEP_ELEMENTS = 4096
STATEMENT_LIMIT = 600  # characters of the checker's statement kept in a message

_ORDER = re.compile(r"however input '(?P<tensor>[^']*)' of node: name: ?(?P<node>\S*) OpType: (?P<op>\S+)")
_CONTEXT = re.compile(r"Name: ?(?P<node>\S*) OpType: (?P<op>\S+)")
_SSA = re.compile(r"single static assignment \(SSA\) form, however '(?P<tensor>[^']*)'")
_REEXPORT = "re-export the model from its framework"


def _copy_fields(source: onnx.ModelProto | onnx.GraphProto, target: onnx.ModelProto | onnx.GraphProto,
                 skip: str) -> None:
    """Copy every set field of ``source`` but ``skip`` into the empty message ``target``."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "extend"):
            getattr(target, field.name).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _kept(tensor: onnx.TensorProto, keep_elements: int) -> bool:
    # from the dims, not ByteSize(): protobuf walks a 100 MB tensor to size it
    return not external_data_helper.uses_external_data(tensor) and math.prod(tensor.dims) <= keep_elements


def skeleton(model: onnx.ModelProto, keep_elements: int = SKELETON_KEEP_ELEMENTS) -> onnx.ModelProto:
    """A copy of ``model`` whose main-graph initializers over ``keep_elements`` (or in external data) are graph
    inputs of their type and dims instead; ``model`` itself is not changed and its weights are never copied."""
    lean = onnx.ModelProto()
    _copy_fields(model, lean, skip="graph")
    _copy_fields(model.graph, lean.graph, skip="initializer")
    inputs = {value.name: value for value in lean.graph.input}
    for tensor in model.graph.initializer:
        if _kept(tensor, keep_elements):
            lean.graph.initializer.append(tensor)
            continue
        value = inputs.get(tensor.name)
        if value is None:  # IR >= 4: an initializer need not be an input
            value = lean.graph.input.add()
            value.name = tensor.name
        value.type.CopyFrom(onnx.helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims)))
    return lean


def _label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"#{index}"


@dataclass(frozen=True)
class EarlyRead:
    """A node that reads a tensor which a later node of its graph produces."""

    node: str  # name, or #index when unnamed; inside a subgraph prefixed with its parent ("If_0/#3")
    op_type: str
    tensor: str
    producer: str
    producer_op: str

    def describe(self) -> str:
        return (f"node '{self.node}' ({self.op_type}) reads '{self.tensor}' before node '{self.producer}' "
                f"({self.producer_op}) produces it")


def early_reads(graph: onnx.GraphProto, scope: str = "") -> list[EarlyRead]:
    """Each node of ``graph`` (and of the graphs inside it) that reads, itself or through its subgraphs, a tensor a
    later node of its own graph produces: the first such tensor per node, in node order."""
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output if name}
    found: list[EarlyRead] = []
    for index, node in enumerate(graph.node):
        reads = list(node.input)
        for inner in subgraphs(node):
            reads += sorted(_outer_reads(inner))
        later = next((name for name in reads if producer.get(name, -1) > index), None)
        if later is not None:
            made = graph.node[producer[later]]
            found.append(EarlyRead(scope + _label(node, index), node.op_type, later,
                                   scope + _label(made, producer[later]), made.op_type))
        for inner in subgraphs(node):
            found += early_reads(inner, f"{scope}{_label(node, index)}/")
    return found


def _count(graph: onnx.GraphProto) -> int:
    return sum(1 for _ in all_nodes(graph))


@dataclass(frozen=True)
class Refusal:
    """What ``onnx.checker`` refused, on one line: its first statement, the node/tensor, what to do."""

    statement: str  # the checker's first statement, whole (its line breaks folded)
    where: str  # the node (name and op) and tensor it is about, and why when that is known; "" when not
    fix: str  # what to do about the file

    def line(self) -> str:
        """The statement and the node/tensor, without the fix (a variant's refusal: the user's file is not at fault)."""
        return f"{self.statement.removesuffix('.')}; {self.where}" if self.where else self.statement

    def with_fix(self) -> str:
        return f"{self.line()}; {self.fix}"


def _producers(model: onnx.ModelProto, tensor: str) -> Iterator[tuple[str, onnx.NodeProto]]:
    for graph in _graphs(model.graph):
        for index, node in enumerate(graph.node):
            if tensor in node.output:
                yield _label(node, index), node


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for inner in subgraphs(node):
            yield from _graphs(inner)


def _node_label(model: onnx.ModelProto | None, name: str, op: str, tensor: str | None = None) -> str:
    """``name`` or, for an unnamed node, ``#index`` of the first node of that op (reading ``tensor``)."""
    if name or model is None:
        return name or "(unnamed)"
    for graph in _graphs(model.graph):
        for index, node in enumerate(graph.node):
            if node.op_type == op and (tensor is None or tensor in node.input):
                return f"#{index}"
    return "(unnamed)"


def refusal(error: BaseException, model: onnx.ModelProto | None = None, *, cyclic: bool = False) -> Refusal:
    """The checker's ``error`` about ``model`` as a :class:`Refusal`; ``cyclic``: the nodes were sorted and could not
    be ordered (a cycle)."""
    text = " ".join(str(error).split())
    statement, _, context = text.partition(" ==> Context: ")
    statement = statement[:STATEMENT_LIMIT] or type(error).__name__
    fix = f"{_REEXPORT} (ONNX Runtime may still run it, but edgeopt makes and checks variants of valid graphs only)"
    order = _ORDER.search(statement)
    if order:
        tensor, op = order["tensor"], order["op"]
        node = _node_label(model, order["node"], op, tensor)
        made = next(_producers(model, tensor), None) if model is not None else None
        if model is not None and made is None:
            where = (f"node '{node}' ({op}) reads '{tensor}', which no node, graph input or initializer "
                     "provides")
            return Refusal(statement, where, f"the graph is incomplete or was edited: {_REEXPORT}")
        where = f"node '{node}' ({op}) reads '{tensor}' before any earlier node produces it"
        if made is not None:
            where = f"node '{node}' ({op}) reads '{tensor}' before node '{made[0]}' ({made[1].op_type}) produces it"
        if cyclic:
            return Refusal(statement, where + ", and the nodes form a cycle (no order runs them)",
                           f"ONNX Runtime refuses a cycle too: {_REEXPORT}")
        return Refusal(statement, where, fix)
    context_node = _CONTEXT.search(context)
    if context_node:
        label = _node_label(model, context_node["node"], context_node["op"])
        return Refusal(statement, f"node '{label}' ({context_node['op']})", fix)
    ssa = _SSA.search(statement)
    if ssa and model is not None:
        makers = [f"'{label}' ({node.op_type})" for label, node in _producers(model, ssa["tensor"])]
        if makers:
            return Refusal(statement, f"tensor '{ssa['tensor']}' is produced by nodes {', '.join(makers)}", fix)
    return Refusal(statement, "", fix)


class GraphRefused(Exception):
    """``onnx.checker`` refused the model (``refusal`` says what, where and what to do)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.with_fix())
        self.refusal = refusal


def check_repairing(model: onnx.ModelProto) -> tuple[str, ...]:
    """Run ``onnx.checker`` on ``model``'s skeleton; when it refuses nodes out of topological order, sort ``model``
    in place and check again.  Returns the repairs made (empty: none); raises :class:`GraphRefused` when the model
    is still refused (anything else the checker raises passes through)."""
    try:
        onnx.checker.check_model(skeleton(model))
        return ()
    except onnx.checker.ValidationError as error:
        early = early_reads(model.graph)
        if not early:
            raise GraphRefused(refusal(error, model)) from error
        total = _count(model.graph)
        sort_nodes(model.graph)
        if early_reads(model.graph):
            raise GraphRefused(refusal(error, model, cyclic=True)) from error
    try:
        onnx.checker.check_model(skeleton(model))
    except onnx.checker.ValidationError as error:
        raise GraphRefused(refusal(error, model)) from error
    return (f"nodes sorted topologically: {len(early)} of {total} out of order (first: {early[0].describe()})",)
