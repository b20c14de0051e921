"""A PyTorch module's inputs bound to ``forward``'s parameter names, and whatever it returns flattened into named
tensors: the two halves of the flat ``(tensors...) -> (tensors...)`` module both ONNX exporters see.

Inputs: each declared input name is a parameter of ``forward`` (passed by keyword, or positionally where the
parameter is positional-only; a ``forward`` of one parameter takes one input of any name), or ``param.key`` for
one entry of a dict parameter (``forward(batch)`` with ``batch["pixel_values"]``), or ``param.0``, ``param.1`` …
for the items of a list parameter (torchvision's detectors take ``images: list[Tensor]``); a ``**kwargs``
forward takes any name.

Outputs: flattened with torch's own pytree (tensors, tuples, lists, dicts, ``ModelOutput``, nesting, lists of
dicts); a dataclass pytree does not know is flattened by its fields.  Each tensor's name is its path:
``logits``, ``last_hidden_state``, ``output.1.0`` (the state ``h`` of ``out, (h, c)``), ``output.0.boxes``
(the boxes of the first image of a detector's list of dicts); a lone tensor is ``output``.  ``None`` leaves and
non-tensor leaves (ints, strings, cache objects) are dropped, each with a note.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from edgeopt.errors import ConfigError


@dataclass(frozen=True)
class Binding:
    """Where one declared input goes: ``forward``'s parameter, and the key inside it for a dict/list parameter."""

    input: str
    parameter: str
    key: str | None
    positional: bool


def bind_inputs(module: torch.nn.Module, names: Sequence[str], where: str) -> tuple[Binding, ...]:
    """Bind each input name to a parameter of ``module.forward`` (module docstring).  ConfigError (exit 2) names
    an input ``forward`` does not take, with the parameters it does take, and a required parameter no input gives."""
    parameters = inspect.signature(module.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = {n: p for n, p in parameters.items()
             if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    accepted = ", ".join(named) or "none"
    bindings = []
    only = next(iter(named)) if len(named) == 1 and len(names) == 1 and not takes_any else None
    for name in names:
        head, _, key = name.partition(".")
        if only is not None and name not in named and not key:  # one parameter, one input: nothing to confuse
            parameter, key_or_none = only, None
        elif name in named:
            parameter, key_or_none = name, None
        elif key and head in named:
            parameter, key_or_none = head, key
        elif takes_any:
            parameter, key_or_none = name, None
        else:
            raise ConfigError(f"{where}: input {name!r} is not a parameter of {type(module).__name__}.forward "
                              f"(it takes: {accepted}; an entry of a dict or list parameter is 'param.key')")
        positional = parameter in named and named[parameter].kind is inspect.Parameter.POSITIONAL_ONLY
        bindings.append(Binding(name, parameter, key_or_none, positional))
    given = {b.parameter for b in bindings}
    missing = [n for n, p in named.items() if p.default is inspect.Parameter.empty and n not in given]
    if missing:
        raise ConfigError(f"{where}: {type(module).__name__}.forward needs {', '.join(repr(m) for m in missing)}, "
                          f"which no input declares (declared: {', '.join(names)})")
    return tuple(bindings)


def call_arguments(bindings: Sequence[Binding], tensors: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of ``forward`` for ``tensors`` in the bindings' order."""
    grouped: dict[str, Any] = {}
    for binding, tensor in zip(bindings, tensors, strict=True):
        if binding.key is None:
            grouped[binding.parameter] = tensor
        else:
            grouped.setdefault(binding.parameter, {})[binding.key] = tensor
    for parameter, value in grouped.items():  # a parameter whose keys are 0, 1, ... is a list
        if isinstance(value, dict) and all(k.isdigit() for k in value) and \
                sorted(int(k) for k in value) == list(range(len(value))):
            grouped[parameter] = [value[str(i)] for i in range(len(value))]
    positional = [grouped.pop(b.parameter) for b in bindings if b.positional and b.parameter in grouped]
    return positional, grouped


def _key_text(key: Any) -> str:
    for attribute in ("key", "idx", "name"):  # MappingKey, SequenceKey, GetAttrKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _flatten(value: Any, prefix: tuple[str, ...], leaves: list[tuple[str, Any]], dropped: list[str]) -> None:
    flat, _ = pytree.tree_flatten_with_path(value, is_leaf=lambda x: x is None)
    for path, leaf in flat:
        parts = prefix + tuple(_key_text(k) for k in path)
        if isinstance(leaf, torch.Tensor):
            leaves.append((_name(parts), leaf))
        elif dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
            _flatten({f.name: getattr(leaf, f.name) for f in dataclasses.fields(leaf)}, parts, leaves, dropped)
        else:
            dropped.append(f"{_name(parts)} ({'None' if leaf is None else type(leaf).__name__})")


def _name(parts: tuple[str, ...]) -> str:
    if not parts:
        return "output"
    return ".".join(("output", *parts) if parts[0].isdigit() else parts)


def flatten_outputs(value: Any) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """``(name, tensor)`` for every tensor ``forward`` returned, and a note for every leaf dropped."""
    leaves: list[tuple[str, Any]] = []
    dropped: list[str] = []
    _flatten(value, (), leaves, dropped)
    return leaves, dropped


class FlatModule(torch.nn.Module):
    """``model`` seen as ``forward(*tensors) -> tuple[tensor, ...]``: inputs in the declared order bound by name,
    outputs the tensor leaves of what ``model`` returns, in pytree order."""

    def __init__(self, model: torch.nn.Module, bindings: Sequence[Binding]) -> None:
        super().__init__()
        self.model = model  # edgeopt.models.export.WRAPPED: export strips this scope from the file's names
        self.bindings = tuple(bindings)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args, kwargs = call_arguments(self.bindings, tensors)
        leaves, _ = flatten_outputs(self.model(*args, **kwargs))
        return tuple(tensor for _, tensor in leaves)
