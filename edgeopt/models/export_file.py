"""The exported ONNX file made to say what the user declared: the wrapper's scope removed from its names, every
dynamic dimension checked to be symbolic and named, output axes named after the dimensions they follow."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from edgeopt.errors import ExportError
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.subgraphs import subgraphs

if TYPE_CHECKING:
    import onnx

WRAPPED = "model"  # the attribute FlatModule holds the user's module in: exporters prefix names with its scope


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for inner in subgraphs(node):
            yield from _graphs(inner)


def _unwrapped(name: str) -> str:
    """``name`` without the wrapper module's scope (``model.fc.weight`` → ``fc.weight``, ``/model/fc/Gemm`` →
    ``/fc/Gemm``): the file's names are the user's module's own, as a direct export would write them."""
    if name.startswith(f"{WRAPPED}."):
        return name[len(WRAPPED) + 1:]
    return name.replace(f"/{WRAPPED}/", "/", 1) if name.startswith(f"/{WRAPPED}/") else name


def strip_wrapper_scope(model: onnx.ModelProto) -> None:
    """Rename every tensor and node the flat wrapper's scope prefixed (unless the plain name is taken)."""
    graphs = list(_graphs(model.graph))
    taken = {name for g in graphs for name in (*(t.name for t in g.initializer),
                                               *(v.name for v in (*g.input, *g.output, *g.value_info)),
                                               *(o for n in g.node for o in n.output))}
    renames = {name: _unwrapped(name) for name in taken if _unwrapped(name) != name}
    renames = {old: new for old, new in renames.items() if new not in taken}
    for graph in graphs:
        for tensor in graph.initializer:
            tensor.name = renames.get(tensor.name, tensor.name)
        for value in (*graph.input, *graph.output, *graph.value_info):
            value.name = renames.get(value.name, value.name)
        for node in graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]
            node.name = _unwrapped(node.name)


def check_named_dims(model: onnx.ModelProto, specs: Sequence[InputSpec], where: str, exporter: str) -> None:
    """Every dynamic dimension of an input is symbolic in the file: an exporter that fixed one fails the export."""
    declared = {value.name: value for value in model.graph.input}
    for spec in specs:
        value = declared.get(spec.name)
        if value is None:
            raise ExportError(f"{where}: input {spec.name!r} is not in the exported file (the exporter dropped it: "
                              "forward does not use it)")
        dims = value.type.tensor_type.shape.dim
        for axis, name in enumerate(spec.shape):
            if isinstance(name, str) and axis < len(dims) and not dims[axis].dim_param:
                raise ExportError(
                    f"{where}: dimension {name!r} (axis {axis} of input {spec.name!r}) was exported as the fixed "
                    f"size {dims[axis].dim_value} by the {exporter} exporter: the model specialises on it (a "
                    "size-dependent branch or reshape); give it a fixed size or make forward size-independent")
            if isinstance(name, str) and axis < len(dims):
                dims[axis].dim_param = name


def name_output_dims(model: onnx.ModelProto, output_axes: Mapping[str, Mapping[int, str]]) -> None:
    """Declare each output axis that follows a dynamic dimension (seen at two sizes) by its name: an exporter's
    own inference may leave it unnamed, or fixed at the example size (dynamo does so for an LSTM's time axis)."""
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        for axis, name in output_axes.get(value.name, {}).items():
            if axis < len(dims):
                dims[axis].dim_param = name
