"""Concrete model inputs, decided once: the shape of every input, and data for it when no sample exists.

Shapes (:func:`resolve_shapes`), per dimension, in this order: ``--input NAME:SHAPE`` (``given``), the
profile's ``bench.input_shapes``, the shape of the user's samples (calibration or eval) when every sample
agrees, and for a symbolic *batch* dimension (the first dimension of an input of rank >= 2) the profile's
``bench.batch_size``.  Any other symbolic dimension left is an error (exit 2) naming each input and
dimension and the three ways to set it: edgeopt never times a guessed shape.  The model's dtype rules: a dtype
``--input`` writes (``x:1x3x8x8:float16``) that differs from it is refused (exit 2); one left out is taken from it.

Size (:func:`check_input_sizes`, also run by :func:`resolve_shapes` given ``max_input_mb``): before anything
is allocated, each input's bytes (resolved shape × its dtype's item size) are compared with the profile's
``bench.max_input_mb``; a larger input is refused (``InputRejectedError``, exit 3) naming the input, its shape
and the cap, never left to fail as a MemoryError.

Data (:func:`synthetic_feeds`): real samples are always preferred; where none exist, random data that
respects each input's domain, drawn directly in the input's dtype (no float64 copy): integer inputs that
index a table (``Gather`` on an initializer, through ``Cast``/``Unsqueeze``/``Reshape``) stay inside it, masks
(a name containing ``mask``) are all ones, lengths (a name containing ``length`` or ending ``lens``/``_len``)
lie in 1..the longest other dimension, other integers in 0..``int_high``-1, booleans are valid, and an integer
scalar (a sample rate, a step count) cannot be guessed: edgeopt asks for samples instead.

Eval samples (:func:`stacked_feeds`) that do not fit an input (rank, fixed dims, dtype kind, value range)
are refused as ``CalibrationError`` (exit 3) naming the eval file and the input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from edgeopt.errors import CalibrationError, ConfigError, InputRejectedError
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.modelref import DeclaredInput
from edgeopt.profiles.schema import Bench

__all__ = ["DEFAULT_MAX_INPUT_MB", "DimSource", "ResolvedInput", "check_input_sizes", "input_bytes",
           "resolve_shapes", "stacked_feeds", "standard_normal", "synthetic_feeds", "table_sizes"]

#: The profile's default ``bench.max_input_mb``: the cap :func:`synthetic_feeds` applies when not told one.
DEFAULT_MAX_INPUT_MB: float = Bench.model_fields["max_input_mb"].default
_CHUNK_VALUES = 1 << 22  # values drawn per step where the dtype has no generator of its own (float16, bfloat16)

_PASS_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand"}


@dataclass(frozen=True)
class DimSource:
    """Where one dimension's value comes from: '--input', 'profile', 'samples', 'batch_size', 'model'."""

    value: int | None
    source: str


@dataclass(frozen=True)
class ResolvedInput:
    """One input with every dimension decided (or, from :func:`resolve_shapes` ``strict=False``, not)."""

    name: str
    dtype: str
    declared: tuple[int | str, ...]
    dims: tuple[DimSource, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d.value) for d in self.dims if d.value is not None)

    @property
    def complete(self) -> bool:
        return all(d.value is not None for d in self.dims)

    def spec(self) -> InputSpec:
        return InputSpec(self.name, self.shape, self.dtype)

    def describe(self) -> str:
        """``x: [1 (batch_size), 3, 48 (samples), ? (unresolved)]``: how each symbolic dim is decided."""
        parts = []
        for declared, dim in zip(self.declared, self.dims, strict=True):
            if isinstance(declared, int) and declared > 0 and dim.source == "model":
                parts.append(str(declared))
            else:
                name = declared if isinstance(declared, str) and declared else "?"
                parts.append(f"{name}={'?' if dim.value is None else dim.value} ({dim.source})")
        return f"{self.name}: [{', '.join(parts)}]"


def _symbolic(dim: int | str) -> bool:
    return isinstance(dim, str) or dim <= 0  # some exporters store -1 or 0 as a dim value


def _sample_dims(name: str, rank: int, samples: Sequence[Mapping[str, np.ndarray]]) -> list[int | None]:
    """Per dimension: the value every sample agrees on, else None."""
    shapes = {tuple(np.shape(s[name])) for s in samples if name in s}
    shapes = {s for s in shapes if len(s) == rank}
    if not shapes:
        return [None] * rank
    return [next(iter(values)) if len(values := {s[i] for s in shapes}) == 1 else None for i in range(rank)]


def resolve_shapes(declared: Sequence[InputSpec], *, given: Sequence[InputSpec] = (),
                   profile_shapes: Mapping[str, Sequence[int]] | None = None,
                   samples: Sequence[Mapping[str, np.ndarray]] = (), batch_size: int = 1,
                   where: str = "model", strict: bool = True,
                   max_input_mb: float | None = None) -> list[ResolvedInput]:
    """Every input of ``declared`` with concrete dimensions (see the module docstring for the order).

    ``strict``: raise ConfigError (exit 2) when a dimension stays unresolved; else return it as None
    (what ``edgeopt inspect`` shows).  ``max_input_mb`` (the profile's ``bench.max_input_mb``): refuse, with
    :func:`check_input_sizes`, an input whose resolved shape would take more (exit 3)."""
    by_name = {spec.name: spec for spec in given}
    unknown = sorted(set(by_name) - {spec.name for spec in declared})
    if unknown:
        raise ConfigError(f"--input {unknown[0]}: {where} has no input of that name "
                          f"(inputs: {', '.join(s.name for s in declared)})")
    profile_shapes = profile_shapes or {}
    resolved: list[ResolvedInput] = []
    for spec in declared:
        rank = len(spec.shape)
        written = by_name.get(spec.name)
        if isinstance(written, DeclaredInput) and written.dtype_given and \
                np.dtype(written.dtype) != np.dtype(spec.dtype):
            raise ConfigError(f"--input {spec.name}: dtype {np.dtype(written.dtype).name} differs from the "
                              f"{np.dtype(spec.dtype).name} {where} declares for input '{spec.name}'; leave the "
                              f"dtype out or give {np.dtype(spec.dtype).name}")
        for source, shape in (("--input", by_name[spec.name].shape if spec.name in by_name else None),
                              ("profile bench.input_shapes", profile_shapes.get(spec.name))):
            # a fixed dim must be given as itself: a name (--input x:1xthreex16x16) where the model fixes 3 is refused
            if shape is not None and (len(shape) != rank or any(not _symbolic(d) and o != d
                                                                for d, o in zip(spec.shape, shape, strict=True))):
                raise ConfigError(f"{source} {spec.name}: shape {list(shape)} does not fit {where}'s "
                                  f"{list(spec.shape)}")
        from_samples = _sample_dims(spec.name, rank, samples)
        dims: list[DimSource] = []
        for index, dim in enumerate(spec.shape):
            if not _symbolic(dim):
                dims.append(DimSource(int(dim), "model"))
                continue
            choices = [("--input", by_name[spec.name].shape[index] if spec.name in by_name else None),
                       ("profile", profile_shapes[spec.name][index] if spec.name in profile_shapes else None),
                       ("samples", from_samples[index]),
                       ("batch_size", batch_size if index == 0 and rank >= 2 else None)]
            value, source = next(((v, s) for s, v in choices if isinstance(v, int) and v > 0), (None, "unresolved"))
            dims.append(DimSource(value, source))
        resolved.append(ResolvedInput(spec.name, spec.dtype, tuple(spec.shape), tuple(dims)))
    missing = [r for r in resolved if not r.complete]
    if strict and missing:
        lines = [f"  {r.describe()}" for r in missing]
        example = missing[0]
        example_shape = "x".join(str(d.value) if d.value is not None else "N" for d in example.dims)
        raise ConfigError(
            f"{where}: symbolic input dimensions edgeopt will not guess:\n" + "\n".join(lines) +
            f"\nset them with --input {example.name}:{example_shape}[:{example.dtype}], with the profile's "
            f"bench.input_shapes, or by giving samples (--calibration DIR or --eval FILE) of that shape")
    if max_input_mb is not None:
        check_input_sizes([r.spec() for r in resolved if r.complete], max_input_mb, where=where)
    return resolved


def input_bytes(spec: InputSpec) -> int:
    """Bytes one array of ``spec`` (concrete dims) takes: the product of its dims × its dtype's item size."""
    return math.prod(int(d) for d in spec.shape) * np.dtype(spec.dtype).itemsize


def _size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_input_sizes(inputs: Sequence[InputSpec], max_input_mb: float, *, where: str = "model") -> None:
    """Refuse (``InputRejectedError``, exit 3) the first input of concrete shape larger than ``max_input_mb``
    MiB, naming it, its shape and dtype, the cap and how to raise it; nothing is allocated."""
    cap = float(max_input_mb) * 2**20
    for spec in inputs:
        if any(isinstance(d, str) for d in spec.shape):
            continue  # unresolved: nothing will be built at this shape
        nbytes = input_bytes(spec)
        if nbytes > cap:
            raise InputRejectedError(
                f"{where}: input '{spec.name}' of shape [{', '.join(str(int(d)) for d in spec.shape)}] "
                f"{spec.dtype} would take {_size(nbytes)}, over the cap of {max_input_mb:g} MiB per input "
                f"(the profile's bench.max_input_mb); give a smaller shape (--input {spec.name}:SHAPE or "
                f"bench.input_shapes) or raise bench.max_input_mb in the profile")


def table_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Graph input name -> the size of the smallest table it indexes (``Gather``/``GatherElements`` data
    that is an initializer or a ``Constant``), following shape-preserving ops from the input."""
    tables: dict[str, int] = {}
    for init in model.graph.initializer:
        tables[init.name] = int(init.dims[0]) if len(init.dims) else 1
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.dims:
            tables[node.output[0]] = int(node.attribute[0].t.dims[0])
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, int] = {}
    for graph_input in model.graph.input:
        frontier, seen = [graph_input.name], set()
        while frontier:
            tensor = frontier.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for node in consumers.get(tensor, []):
                if node.op_type in ("Gather", "GatherElements") and len(node.input) > 1 and node.input[1] == tensor:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    data = node.input[0]
                    if data in tables and axis == 0:
                        size = tables[data]
                        found[graph_input.name] = min(found.get(graph_input.name, size), size)
                elif node.op_type in _PASS_THROUGH and node.input and node.input[0] == tensor:
                    frontier.extend(node.output)
    return found


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """Standard normal values made in ``dtype``: float32/float64 drawn directly, narrower floats in chunks."""
    if dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        return rng.standard_normal(shape, dtype=dtype.type)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK_VALUES):
        stop = min(start + _CHUNK_VALUES, flat.size)
        flat[start:stop] = rng.standard_normal(stop - start, dtype=np.float32)
    return out


def _is_length(name: str) -> bool:
    lowered = name.lower()
    return "length" in lowered or lowered.endswith(("lens", "_len"))


def synthetic_feeds(inputs: Sequence[InputSpec], model: onnx.ModelProto | None = None,
                    seed: int = 0, *, max_input_mb: float | None = DEFAULT_MAX_INPUT_MB,
                    where: str = "model", int_high: int = 10) -> dict[str, np.ndarray]:
    """Seeded random data of the (concrete) ``inputs``, inside each input's domain (module docstring), made
    directly in each input's dtype.

    Every input's size is checked against ``max_input_mb`` (the profile's ``bench.max_input_mb``; None: no
    cap) before anything is allocated (``InputRejectedError``, exit 3).  Raises ConfigError naming the input
    when its values cannot be drawn safely."""
    if max_input_mb is not None:
        check_input_sizes(inputs, max_input_mb, where=where)
    rng = np.random.default_rng(seed)
    tables = table_sizes(model) if model is not None else {}
    longest = max((int(d) for spec in inputs for d in spec.shape[1:]), default=1)  # what a length can reach
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = tuple(int(d) for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = standard_normal(rng, shape, dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape, dtype=np.uint8).view(np.bool_)
        elif dtype.kind in "iu":
            if "mask" in spec.name.lower():
                feeds[spec.name] = np.ones(shape, dtype=dtype)
            elif _is_length(spec.name) and shape:
                feeds[spec.name] = rng.integers(1, longest + 1, size=shape, dtype=dtype)
            elif spec.name in tables:
                high = max(1, min(tables[spec.name], int(np.iinfo(dtype).max) + 1))  # an empty table: 0s
                feeds[spec.name] = rng.integers(0, high, size=shape, dtype=dtype)
            elif not shape:
                raise ConfigError(f"input '{spec.name}': an integer scalar (a rate, a count, a flag?) cannot be "
                                  "drawn at random; give real samples (--calibration DIR of .npz files)")
            else:
                feeds[spec.name] = rng.integers(0, max(1, int_high), size=shape, dtype=dtype)
        else:
            raise ConfigError(f"input '{spec.name}': cannot generate data of dtype {spec.dtype}; give samples")
    return feeds


def _fits_values(array: np.ndarray, dtype: np.dtype[Any]) -> str | None:
    """Why ``array``'s values cannot be cast to ``dtype`` without changing meaning, else None."""
    if array.dtype == dtype or array.size == 0:
        return None
    if dtype.kind in "iub" and array.dtype.kind in "fc":
        return f"{array.dtype} values cannot feed an input of dtype {dtype} (store the integers it expects)"
    if dtype.kind != "c" and array.dtype.kind == "c":
        return f"complex values cannot feed an input of dtype {dtype}"
    if dtype.kind in "iu" and array.dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            return f"values {low}..{high} do not fit the input's {dtype} ({info.min}..{info.max})"
    if dtype.kind == "f" and array.dtype.kind in "fiu" and array.dtype.itemsize >= dtype.itemsize:
        limit = float(np.finfo(dtype).max)
        peak = max(abs(float(array.max())), abs(float(array.min())))
        if peak > limit:
            return f"values up to {peak:g} overflow the input's {dtype} (largest {limit:g})"
    return None


def stacked_feeds(images: np.ndarray, spec: InputSpec, source: str = "eval set") -> np.ndarray:
    """Stacked samples (first axis) as per-sample arrays of ``spec``'s rank: an image (C,H,W) becomes one
    batch-1 sample (1,C,H,W); a sample keeps its own size in every symbolic dimension (never reshaped to 1).

    Raises CalibrationError (exit 3) naming ``source`` and the input when a sample does not fit the input's
    rank, fixed dimensions or dtype (floats into an integer input, values out of the dtype's range)."""
    array = images[:, None] if images.ndim == len(spec.shape) else images
    where = f"{source}: input '{spec.name}'"
    if array.ndim != len(spec.shape) + 1:
        raise CalibrationError(f"{where}: samples of shape {list(images.shape[1:])} do not fit the model's "
                               f"{list(spec.shape)} (rank {images.ndim - 1}, the model wants rank {len(spec.shape)})")
    for index, dim in enumerate(spec.shape):
        if not _symbolic(dim) and array.shape[index + 1] != dim:
            raise CalibrationError(f"{where}: samples of shape {list(array.shape[1:])} do not fit the model's "
                                   f"{list(spec.shape)} (dimension {index} must be {dim})")
    why = _fits_values(array, np.dtype(spec.dtype))
    if why is not None:
        raise CalibrationError(f"{where}: {why}")
    return array.astype(spec.dtype, copy=False)
