"""A PyTorch module's inputs bound to ``forward``'s parameter names, and whatever it returns flattened into named
tensors: the two halves of the flat ``(tensors...) -> (tensors...)`` module both ONNX exporters see.

Inputs: each declared input name is a parameter of ``forward`` (passed by keyword, or positionally where the
parameter is positional-only; a ``forward`` of one parameter takes one input of any name), or ``param.key`` for
one entry of a dict parameter (``forward(batch)`` with ``batch["pixel_values"]``), or ``param.0``, ``param.1`` …
for the items of a list parameter (torchvision's detectors take ``images: list[Tensor]``); a ``**kwargs``
forward takes any name.  Entries ``param.<layer>.key`` / ``param.<layer>.value`` of a cache parameter (``cache``,
``past_key_values``) become a transformers ``DynamicCache``; a cache ``forward`` returns becomes the outputs
``<name>.<layer>.key`` / ``<name>.<layer>.value``.

Outputs: flattened with torch's own pytree (tensors, tuples, lists, dicts, ``ModelOutput``, nesting, lists of
dicts); a dataclass pytree does not know is flattened by its fields.  Each tensor's name is its path:
``logits``, ``last_hidden_state``, ``output.1.0`` (the state ``h`` of ``out, (h, c)``), ``output.0.boxes``
(the boxes of the first image of a detector's list of dicts); a lone tensor is ``output``.  ``None`` leaves and
non-tensor leaves (ints, strings, cache objects) are dropped, each with a note.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from edgeopt.errors import ConfigError
from edgeopt.models.modelref import CACHE_PARAMETERS

_CACHE_KEY = re.compile(r"\d+\.(key|value)")


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
        elif isinstance(value, dict) and value and all(_CACHE_KEY.fullmatch(k) for k in value):
            grouped[parameter] = key_value_cache(value)
    positional = [grouped.pop(b.parameter) for b in bindings if b.positional and b.parameter in grouped]
    return positional, grouped


def key_value_cache(entries: dict[str, Any]) -> Any:
    """A transformers ``DynamicCache`` from ``{"0.key": tensor, "0.value": tensor, ...}`` (one pair per layer)."""
    layers = sorted({int(k.split(".")[0]) for k in entries})
    if layers != list(range(len(layers))) or any(f"{i}.{part}" not in entries for i in layers
                                                  for part in ("key", "value")):
        raise ConfigError(f"past key/value inputs {sorted(entries)}: need '<layer>.key' and '<layer>.value' for "
                          "every layer from 0")
    try:
        from transformers import DynamicCache
    except ImportError as error:
        raise ConfigError(f"past key/value inputs need transformers installed ({error})") from error
    return DynamicCache(ddp_cache_data=[(entries[f"{i}.key"], entries[f"{i}.value"]) for i in layers])


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
        elif _is_key_value_cache(leaf):
            for index, layer in enumerate(leaf.layers):
                leaves += [(_name((*parts, str(index), "key")), layer.keys),
                           (_name((*parts, str(index), "value")), layer.values)]
        elif dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
            _flatten({f.name: getattr(leaf, f.name) for f in dataclasses.fields(leaf)}, parts, leaves, dropped)
        else:
            dropped.append(f"{_name(parts)} ({'None' if leaf is None else type(leaf).__name__})")


def _is_key_value_cache(value: Any) -> bool:
    """A transformers cache (``DynamicCache``): layers each holding ``keys`` and ``values`` tensors."""
    layers = getattr(value, "layers", None)
    return isinstance(layers, (list, tuple)) and bool(layers) and all(
        isinstance(getattr(layer, "keys", None), torch.Tensor) and isinstance(getattr(layer, "values", None),
                                                                               torch.Tensor) for layer in layers)


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
        self.model = model  # edgeopt.models.export_file.WRAPPED: export strips this scope from the file's names
        self.bindings = tuple(bindings)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args, kwargs = call_arguments(self.bindings, tensors)
        leaves, _ = flatten_outputs(self.model(*args, **kwargs))
        return tuple(tensor for _, tensor in leaves)


PAST = "past"  # the dynamic dimension of the cached length
TOTAL = f"{PAST}+{{seq}}"  # an attention mask's length with a cache: past + the new tokens


def with_past_inputs(module: torch.nn.Module, specs: Sequence[Any], where: str) -> list[Any]:
    """``specs`` plus one key and one value input per layer of a transformers causal LM's cache,
    ``<param>.<layer>.key`` of shape ``batch x kv_heads x past x head_dim`` (``past`` dynamic), and the attention
    mask's length turned into ``past+<seq>`` (what the model reads with a cache)."""
    from edgeopt.models.input_spec import InputSpec

    parameters = inspect.signature(module.forward).parameters
    parameter = next((p for p in CACHE_PARAMETERS if p in parameters), None)
    config = getattr(module, "config", None)
    if parameter is None or config is None:
        raise ConfigError(f"{where}: --with-past needs a transformers causal LM (a forward parameter "
                          f"{' or '.join(CACHE_PARAMETERS)} and a config); {type(module).__name__} has neither")
    ids = next((s for s in specs if s.name in ("input_ids", "inputs_embeds")), None)
    if ids is None or len(ids.shape) < 2 or not isinstance(ids.shape[1], str):
        raise ConfigError(f"{where}: --with-past needs input_ids declared with a dynamic batch and sequence, e.g. "
                          "input_ids:batch x seq=16:int64")
    batch, seq = ids.shape[0], ids.shape[1]
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    layers = int(config.num_hidden_layers)
    total = TOTAL.format(seq=seq)
    out = [InputSpec(s.name, (*s.shape[:-1], total), s.dtype) if s.name == "attention_mask" else s for s in specs]
    declared = {s.name for s in specs}  # already declared (a run's plan): kept as they are
    for layer in range(layers):
        for part in ("key", "value"):
            if f"{parameter}.{layer}.{part}" not in declared:
                out.append(InputSpec(f"{parameter}.{layer}.{part}", (batch, heads, PAST, head_dim), "float32"))
    return out
