"""ONNX models with subgraphs (``If``, ``Loop``, ``Scan``): walking them, and the repairs ONNX Runtime's float16
converter needs on them.

Names: ONNX Runtime's optimiser copies an outer initializer into each branch of an ``If`` that reads it, so a graph
saved after its optimisation (the pre-processed model that edgeopt quantizes) holds the same initializer name
in several subgraphs.  That is valid ONNX (a subgraph's name shadows the outer one), but ONNX Runtime's float16
converter keys initializers by name across the whole model and stops on an assertion.  This renames each
repeated subgraph initializer, and every reference to it in its own scope, to a fresh name.

Order: the converter appends its input casts after every node, and its own re-sort (``OnnxModel.topological_sort``)
sees only a node's explicit inputs, so an ``If`` whose branches read a cast input stays ahead of that cast and
``onnx.checker`` refuses the graph.  :func:`sort_nodes` orders each graph by what its nodes read, subgraphs
included.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import onnx


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held by ``node``'s attributes (an ``If``'s branches, a ``Loop``'s or ``Scan``'s body)."""
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        yield from attribute.graphs


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of the graphs inside it, at any depth."""
    for node in graph.node:
        yield node
        for inner in subgraphs(node):
            yield from all_nodes(inner)


def _names(graph: onnx.GraphProto) -> Iterator[str]:
    """Every tensor name that ``graph`` or any graph inside it defines or reads."""
    yield from (t.name for t in graph.initializer)
    yield from (v.name for v in (*graph.input, *graph.output, *graph.value_info))
    for node in graph.node:
        yield from (*node.input, *node.output)
        for inner in subgraphs(node):
            yield from _names(inner)


def _defines(graph: onnx.GraphProto, name: str) -> bool:
    """Whether ``graph`` itself declares ``name`` (so that it shadows an outer tensor of that name)."""
    return (any(t.name == name for t in graph.initializer) or any(v.name == name for v in graph.input)
            or any(name in node.output for node in graph.node))


def _rename_references(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename the uses of the outer tensor ``old`` inside ``graph`` and its subgraphs, unless shadowed."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        for inner in subgraphs(node):
            if not _defines(inner, old):
                _rename_references(inner, old, new)
    for value in (*graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def unique_initializer_names(model: onnx.ModelProto) -> int:
    """Rename, in place, subgraph initializers whose name another graph of ``model`` also gives an initializer;
    returns how many were renamed.  The main graph's names never change (they are the model's interface)."""
    taken = set(_names(model.graph))
    seen = {t.name for t in model.graph.initializer}
    renamed = 0

    def visit(graph: onnx.GraphProto) -> None:
        nonlocal renamed
        for tensor in graph.initializer:
            if tensor.name in seen:
                old, suffix = tensor.name, 1
                while f"{old}__{suffix}" in taken:
                    suffix += 1
                tensor.name = f"{old}__{suffix}"
                taken.add(tensor.name)
                _rename_references(graph, old, tensor.name)
                renamed += 1
            seen.add(tensor.name)
        for node in graph.node:
            for inner in subgraphs(node):
                visit(inner)

    for node in model.graph.node:
        for inner in subgraphs(node):
            visit(inner)
    return renamed


def _outer_reads(graph: onnx.GraphProto) -> set[str]:
    """The names that ``graph`` (with the graphs inside it) reads but does not define: tensors of an outer scope."""
    defined = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    for node in graph.node:
        defined.update(node.output)
    reads: set[str] = set()
    for node in graph.node:
        reads.update(node.input)
        for inner in subgraphs(node):
            reads |= _outer_reads(inner)
    return reads - defined - {""}


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Order the nodes of ``graph`` and of every graph inside it so that each comes after the producers of what it
    reads, its subgraphs' outer reads included; ties keep the original order.  A graph with a cycle is left as it is
    (``onnx.checker`` names the node)."""
    nodes = list(graph.node)
    for node in nodes:
        for inner in subgraphs(node):
            sort_nodes(inner)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
    waiting_on: list[set[int]] = []
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        reads = set(node.input)
        for inner in subgraphs(node):
            reads |= _outer_reads(inner)
        needs = {producer[name] for name in reads if name in producer and producer[name] != index}
        waiting_on.append(needs)
        for need in needs:
            consumers.setdefault(need, []).append(index)
    ready = [index for index, needs in enumerate(waiting_on) if not needs]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers.get(index, []):
            waiting_on[consumer].discard(index)
            if not waiting_on[consumer]:
                heapq.heappush(ready, consumer)
    if len(order) == len(nodes):
        del graph.node[:]
        graph.node.extend(nodes[index] for index in order)
