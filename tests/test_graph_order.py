"""Graphs out of topological order (ONNX Runtime runs them, ``onnx.checker`` refuses them): sorted in memory, a
sorted copy written under the run's folder only, and the checker's refusals said whole, naming node and tensor.

Every model is built by hand and run in the real ONNX Runtime."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.errors import EXIT_INPUT_REJECTED, ModelFileError, QuantizationError
from edgeopt.models.graph import cpu_session, inspect_model, load_model, open_model
from edgeopt.models.graph_check import early_reads
from edgeopt.models.quantize import make_variant, validate_variant
from edgeopt.models.recipes import Recipe
from edgeopt.models.sorted_copy import sorted_source

FEEDS = {"x": np.linspace(-1, 1, 3 * 8, dtype=np.float32).reshape(3, 8)}


def _nodes() -> list[onnx.NodeProto]:
    """In order: x -> mm1 -> relu1 -> mm2 -> add(+a) -> gate (an If whose branches read 'b' and 'c' from outside)."""
    then_branch = helper.make_graph([helper.make_node("Mul", ["c", "b"], ["t"], name="then_mul")], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 8])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["c"], ["e0"], name="else_neg"),
                                     helper.make_node("Add", ["e0", "b"], ["e"], name="else_add")], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 8])])
    return [helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
            helper.make_node("Relu", ["a"], ["b"], name="relu1"),
            helper.make_node("MatMul", ["b", "w2"], ["c"], name="mm2"),
            helper.make_node("ReduceSum", ["c"], ["s"], name="sum", keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["flag"], name="positive"),
            helper.make_node("If", ["flag"], ["g"], name="gate", then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Add", ["g", "a"], ["y"], name="add")]


def _model(nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), name) for name in ("w1", "w2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
                              [*weights, numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _shuffled(branch_too: bool = False) -> onnx.ModelProto:
    """The same graph, nodes reversed; ``branch_too``: the else branch's two nodes swapped too (ONNX Runtime refuses
    that one: it checks a subgraph's order, not the main graph's)."""
    nodes = _nodes()[::-1]
    if branch_too:
        gate = next(node for node in nodes if node.op_type == "If")
        branch = next(a.g for a in gate.attribute if a.name == "else_branch")
        order = list(branch.node)[::-1]
        del branch.node[:]
        branch.node.extend(order)
    return _model(nodes)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _refused(path: Path) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_INPUT_REJECTED and message.startswith(f"{path}: onnx.checker rejected")
    assert "\n" not in message
    return message


def test_a_shuffled_graph_is_sorted_and_runs_end_to_end(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    shuffled, in_order = user / "model.onnx", tmp_path / "in_order.onnx"
    onnx.save(_shuffled(), str(shuffled))
    onnx.save(_model(_nodes()), str(in_order))
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):  # what the user hit
        onnx.checker.check_model(str(shuffled))
    want = cpu_session(in_order).run(None, FEEDS)[0]
    np.testing.assert_array_equal(cpu_session(shuffled).run(None, FEEDS)[0], want)  # ONNX Runtime runs it as is
    before = _digest(user)

    opened = open_model(shuffled)
    # out of order: add, gate (its branches read b and c), positive, sum, mm2, relu1; of 7 + 3 in the branches
    assert opened.repairs == ("nodes sorted topologically: 6 of 10 out of order (first: node 'add' (Add) reads 'g' "
                              "before node 'gate' (If) produces it)",)
    assert [n.name for n in opened.model.graph.node] == [n.name for n in _nodes()]
    assert early_reads(opened.model.graph) == []
    assert inspect_model(shuffled).graph_repairs == opened.repairs

    run = tmp_path / "run" / "variants" / ".work" / "sorted"
    made = sorted_source(shuffled, run)
    assert made.repairs == opened.repairs and made.path.is_relative_to(run) and made.path.name == "model.onnx"
    onnx.checker.check_model(str(made.path))
    np.testing.assert_array_equal(cpu_session(made.path).run(None, FEEDS)[0], want)
    stamp = made.path.stat().st_mtime_ns
    assert sorted_source(shuffled, run).path == made.path and made.path.stat().st_mtime_ns == stamp  # reused
    assert sorted_source(in_order, run).path == in_order  # nothing to repair: the file itself

    variant = make_variant(made.path, Recipe.parse("fp32"), tmp_path / "run" / "variants")  # then as usual
    np.testing.assert_array_equal(cpu_session(variant.path).run(None, FEEDS)[0], want)
    assert _digest(user) == before and list(user.iterdir()) == [shuffled]  # the user's folder is untouched


def test_nodes_inside_a_subgraph_are_sorted_too(tmp_path: Path) -> None:
    shuffled, in_order = tmp_path / "model.onnx", tmp_path / "in_order.onnx"
    onnx.save(_shuffled(branch_too=True), str(shuffled))
    onnx.save(_model(_nodes()), str(in_order))
    made = sorted_source(shuffled, tmp_path / "run")
    assert made.repairs == ("nodes sorted topologically: 7 of 10 out of order (first: node 'add' (Add) reads 'g' "
                            "before node 'gate' (If) produces it)",)
    gate = next(node for node in load_model(made.path).graph.node if node.op_type == "If")
    assert [n.name for a in gate.attribute if a.name == "else_branch" for n in a.g.node] == ["else_neg", "else_add"]
    np.testing.assert_array_equal(cpu_session(made.path).run(None, FEEDS)[0],
                                  cpu_session(in_order).run(None, FEEDS)[0])


def test_a_variant_of_the_unsorted_file_is_made_from_its_sorted_copy_and_a_raw_check_names_node_and_tensor(
        tmp_path: Path) -> None:
    shuffled = tmp_path / "model.onnx"
    onnx.save(_shuffled(), str(shuffled))
    before = shuffled.read_bytes()
    made = make_variant(shuffled, Recipe.parse("fp32"), tmp_path / "variants")
    assert made.provenance["graph_repairs"] and made.provenance["graph_repairs"][0].startswith(
        "nodes sorted topologically: ")
    assert shuffled.read_bytes() == before  # the user's file is untouched
    onnx.checker.check_model(str(made.path))  # the variant is a valid (sorted) graph
    with pytest.raises(QuantizationError) as caught:  # the unsorted file itself, checked as a variant would be
        validate_variant(shuffled, "fp32", {})
    assert str(caught.value) == (
        "variant fp32: produced an invalid ONNX graph: Nodes in a graph must be topologically sorted, however input "
        "'g' of node: name: add OpType: Add is not output of any previous nodes; node 'add' (Add) reads 'g' before "
        "node 'gate' (If) produces it")


def test_sorting_keeps_external_data_references(tmp_path: Path) -> None:
    user = tmp_path / "user"
    (user / "weights").mkdir(parents=True)
    model = _shuffled()
    onnx.save(model, str(user / "model.onnx"), save_as_external_data=True, location="weights/model.data",
              size_threshold=0)
    in_order = tmp_path / "in_order.onnx"
    onnx.save(_model(_nodes()), str(in_order))
    before = _digest(user)

    made = sorted_source(user / "model.onnx", tmp_path / "run")
    assert (made.path.parent / "weights" / "model.data").read_bytes() == (user / "weights" / "model.data").read_bytes()
    load_model(made.path)  # its external data checks pass: a plain copy beside it, no link
    onnx.checker.check_model(str(made.path))
    np.testing.assert_array_equal(cpu_session(made.path).run(None, FEEDS)[0], cpu_session(in_order).run(None, FEEDS)[0])
    assert _digest(user) == before and sorted(p.name for p in user.rglob("*")) == ["model.data", "model.onnx",
                                                                                   "weights"]
    (user / "weights" / "model.data").write_bytes((user / "weights" / "model.data").read_bytes()[::-1])
    assert sorted_source(user / "model.onnx", tmp_path / "run").path != made.path  # new weights: a new copy


def _two_nodes(first: onnx.NodeProto, second: onnx.NodeProto) -> onnx.ModelProto:
    graph = helper.make_graph([first, second], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_cycle_is_refused_naming_node_op_and_tensor(tmp_path: Path) -> None:
    path = tmp_path / "cycle.onnx"
    onnx.save(_two_nodes(helper.make_node("Add", ["x", "q"], ["y"], name="add"),
                         helper.make_node("Neg", ["y"], ["q"], name="neg")), str(path))
    assert _refused(path) == (
        f"{path}: onnx.checker rejected the model: Nodes in a graph must be topologically sorted, however input 'q' "
        "of node: name: add OpType: Add is not output of any previous nodes; node 'add' (Add) reads 'q' before node "
        "'neg' (Neg) produces it, and the nodes form a cycle (no order runs them); ONNX Runtime refuses a cycle too: "
        "re-export the model from its framework")


def test_a_tensor_nothing_produces_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "dangling.onnx"
    onnx.save(_two_nodes(helper.make_node("Relu", ["x"], ["r"]),  # unnamed: named by its index
                         helper.make_node("Add", ["r", "lost"], ["y"])), str(path))
    assert _refused(path) == (
        f"{path}: onnx.checker rejected the model: Nodes in a graph must be topologically sorted, however input "
        "'lost' of node: name: OpType: Add is not output of any previous nodes; node '#1' (Add) reads 'lost', which no "
        "node, graph input or initializer provides; the graph is incomplete or was edited: re-export the model from "
        "its framework")


def test_another_refusal_gives_the_first_statement_and_the_node(tmp_path: Path) -> None:
    path = tmp_path / "attribute.onnx"
    onnx.save(_two_nodes(helper.make_node("Relu", ["x"], ["r"], name="relu", alpha=0.1),
                         helper.make_node("Neg", ["r"], ["y"], name="neg")), str(path))
    assert _refused(path) == (
        f"{path}: onnx.checker rejected the model: Unrecognized attribute: alpha for operator Relu; node 'relu' "
        "(Relu); re-export the model from its framework (ONNX Runtime may still run it, but edgeopt makes and checks "
        "variants of valid graphs only)")
    path = tmp_path / "twice.onnx"
    onnx.save(_two_nodes(helper.make_node("Relu", ["x"], ["y"], name="one"),
                         helper.make_node("Neg", ["x"], ["y"], name="two")), str(path))
    assert ("Graph must be in single static assignment (SSA) form, however 'y' has been used as output names "
            "multiple times; tensor 'y' is produced by nodes 'one' (Relu), 'two' (Neg);") in _refused(path)


def test_inspect_says_what_it_repaired_and_what_it_refuses(tmp_path: Path) -> None:
    from tests.test_cli import edgeopt

    shuffled = tmp_path / "model.onnx"
    onnx.save(_shuffled(), str(shuffled))
    done = edgeopt("inspect", shuffled)
    assert done.returncode == 0, done.stderr
    assert "repaired in memory (the file is unchanged): nodes sorted topologically: 6 of 10 out of order" in done.stdout
    cycle = tmp_path / "cycle.onnx"
    onnx.save(_two_nodes(helper.make_node("Add", ["x", "q"], ["y"], name="add"),
                         helper.make_node("Neg", ["y"], ["q"], name="neg")), str(cycle))
    refused = edgeopt("inspect", cycle)
    assert refused.returncode == 3
    assert "node 'add' (Add) reads 'q' before node 'neg' (Neg) produces it, and the nodes form a cycle" in (
        refused.stderr)
