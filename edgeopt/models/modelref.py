"""Resolve a model reference: a ``package.module:factory`` string or a path to an ``.onnx`` file."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.core.fileio import sha256_file
from edgeopt.errors import USER_CODE_ERRORS, ConfigError, UserCodeError, first_line
from edgeopt.models.input_spec import InputSpec

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_entry_point(reference: str) -> bool:
    return bool(_ENTRY_POINT.match(reference)) and not reference.endswith(".onnx")


def load_entry_point(reference: str) -> Callable[..., Any]:
    """Import ``package.module:attribute`` and return the attribute; errors name the reference: a module that
    cannot be found is exit 2, one whose own code raises (or calls ``sys.exit``) while importing is exit 3."""
    if not is_entry_point(reference):
        raise ConfigError(f"{reference}: expected 'package.module:function'")
    module_name, attribute = reference.split(":", 1)
    module = import_user_module(reference, module_name)
    if not hasattr(module, attribute):
        raise ConfigError(f"{reference}: module '{module_name}' has no attribute '{attribute}'")
    return getattr(module, attribute)  # type: ignore[no-any-return]


_DIM_NAME = r"[A-Za-z_]\w*"
CACHE_PARAMETERS = ("cache", "past_key_values")  # what transformers calls a causal LM's key/value cache argument


@dataclass(frozen=True)
class DeclaredInput(InputSpec):
    """An input as declared (``--input``, ``input_spec()``): ``dtype_given`` when the declaration wrote its dtype.
    A dtype left out is float32 for a factory; for an ONNX model the file's dtype rules, and a written one that
    differs from it is refused (:func:`edgeopt.models.inputs.resolve_shapes`)."""

    dtype_given: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class InputDeclaration:
    """Model inputs as declared by ``--input`` or a factory's ``input_spec()`` (one grammar, documented in
    docs/export.md): each input's shape keeps its dimension *names*; ``sizes`` holds the example size given for
    a name (``seq=128``).  An ONNX model's run reads :meth:`concrete` (each hinted name replaced by its size)."""

    specs: tuple[InputSpec, ...]
    sizes: Mapping[str, int]

    def concrete(self) -> list[InputSpec]:
        return [replace(s, shape=tuple(self.sizes.get(d, d) if isinstance(d, str) else d for d in s.shape))
                for s in self.specs]

    @property
    def dim_names(self) -> list[str]:
        """Every dimension name, in order of first use."""
        return list(dict.fromkeys(d for s in self.specs for d in s.shape if isinstance(d, str)))


def _split_dims(text: str) -> list[str]:
    """``1x3x224x224``, ``batch x 3 x height x width`` (spaces: names may hold an ``x``), ``batch,3,h,w``."""
    if "," in text:
        return [part.strip() for part in text.split(",")]
    if re.search(r"\s", text.strip()):
        return [part.strip() for part in re.split(r"\s+[x\u00d7]\s+", text.strip())]
    return text.replace("\u00d7", "x").split("x")


def _parse_dim(dim: int | str, text: str, sizes: dict[str, int]) -> int | str:
    if isinstance(dim, int) and not isinstance(dim, bool):
        if dim < 1:
            raise ConfigError(f"input {text!r}: dimension {dim} must be a whole number >= 1 or a name")
        return dim
    dim = str(dim).strip()
    if re.fullmatch(r"[+-]?\d+", dim):
        return _parse_dim(int(dim), text, sizes)
    match = re.fullmatch(rf"({_DIM_NAME})\s*(?:=\s*([+-]?\d+))?", dim)
    if match is None:
        raise ConfigError(f"input {text!r}: dimension {dim!r} is neither a whole number, a name nor name=size")
    name, size = match.group(1), match.group(2)
    if size is not None:
        if int(size) < 1:
            raise ConfigError(f"input {text!r}: size of dimension {name!r} must be >= 1, got {size}")
        if sizes.setdefault(name, int(size)) != int(size):
            raise ConfigError(f"input {text!r}: dimension {name!r} is given two sizes ({sizes[name]} and {size})")
    return name


def parse_inputs(items: Sequence[str | InputSpec | tuple[Any, ...]], where: str = "--input") -> InputDeclaration:
    """Parse input declarations: ``name:DIMxDIM[:dtype]`` strings (the CLI's ``--input``), ``(name, shape,
    dtype)`` tuples whose dims are ints, names or ``name=size`` strings (a factory's ``input_spec()``), or
    ``InputSpec``.  A non-numeric dim is a dynamic dimension with that name, shared by every input that uses it."""
    specs: list[InputSpec] = []
    sizes: dict[str, int] = {}
    for item in items:
        dtype_given = True
        if isinstance(item, InputSpec):
            name, dims, dtype, text = item.name, list(item.shape), item.dtype, repr(item)
            dtype_given = item.dtype_given if isinstance(item, DeclaredInput) else True
        elif isinstance(item, str):
            parts = item.split(":")
            if len(parts) not in (2, 3) or not parts[0].strip():
                raise ConfigError(f"{where} {item!r}: expected name:DIMxDIM[:dtype], e.g. input:1x3x224x224:float32 "
                                  "or input_ids:batch x seq=128:int64")
            name, dims, text = parts[0].strip(), list(_split_dims(parts[1])), item
            dtype, dtype_given = (parts[2].strip(), True) if len(parts) == 3 else ("float32", False)
        elif isinstance(item, tuple) and len(item) == 3:
            name, dims, dtype, text = str(item[0]), list(item[1]), str(item[2]), repr(item)
        else:
            raise ConfigError(f"{where}: {item!r} is not 'name:DIMxDIM[:dtype]' nor a (name, shape, dtype) tuple")
        try:
            np.dtype(dtype)
        except TypeError as error:
            raise ConfigError(f"{where} {text}: unknown dtype {dtype!r}") from error
        if name in {s.name for s in specs}:
            raise ConfigError(f"{where} {text}: input {name!r} is declared twice")
        specs.append(DeclaredInput(name, tuple(_parse_dim(d, text, sizes) for d in dims), dtype, dtype_given))
    return InputDeclaration(tuple(specs), sizes)


def parse_input_spec(text: str) -> InputSpec:
    """Parse one ``name:1x3x224x224[:float32]``; a name with a size (``seq=128``) becomes that size, a bare name
    (e.g. ``batch``) stays symbolic (for an ONNX model: left for the other sources to set)."""
    return parse_inputs([text]).concrete()[0]


def factory_input_specs(reference: str) -> InputDeclaration | None:
    """The ``input_spec()`` a factory's module declares, if any: ``(name, shape, dtype)`` tuples or ``--input``
    strings (one grammar: :func:`parse_inputs`)."""
    module_name = reference.split(":", 1)[0]
    module = import_user_module(reference, module_name)
    declare = getattr(module, "input_spec", None)
    if declare is None:
        return None
    where = f"{module_name}.input_spec()"
    return parse_inputs(call_user(reference, f"your {where}", lambda: list(declare())), where=where)


def user_frame(error: BaseException) -> str:
    """``file:line in function`` of the innermost frame outside edgeopt, torch and site-packages (the user's own
    code, where it raised), else of the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if "site-packages" not in f.filename and f"{os.sep}edgeopt{os.sep}" not in f.filename
           and not f.filename.startswith("<")]
    chosen = own or list(frames)
    if not chosen:
        return "no frame"
    return f"{chosen[-1].filename}:{chosen[-1].lineno} in {chosen[-1].name}"


def user_code_error(reference: str, what: str, error: BaseException) -> UserCodeError:
    """The exit-3 error for ``error`` (one of :data:`~edgeopt.errors.USER_CODE_ERRORS`) from the user's code
    ``what`` (``your factory``, ...) of ``reference``: what it did (``raised KeyError: 'x'``, ``called
    sys.exit(0)``) and the user's frame."""
    done = (f"called sys.exit({error.code!r}); edgeopt stopped without a result"
            if isinstance(error, SystemExit) else f"raised {type(error).__name__}: {first_line(error)}")
    return UserCodeError(f"{reference}: {what} {done} (at {user_frame(error)})")


def import_user_module(reference: str, module_name: str) -> Any:
    """Import the user's module ``module_name`` (named by ``reference``): one that is not found is ConfigError
    (exit 2); one whose code fails while importing is :func:`user_code_error` (exit 3)."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{reference}: cannot import module '{module_name}': {error}") from error
    except USER_CODE_ERRORS as error:
        raise user_code_error(reference, f"importing module '{module_name}'", error) from error


def call_user(reference: str, what: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, the user's code: whatever it raises, a ``sys.exit`` and a stray ``GeneratorExit``
    included, is :func:`user_code_error` (exit 3, naming ``reference`` and the user's frame), never edgeopt's
    internal error nor edgeopt's own exit; KeyboardInterrupt and the stop signals still stop edgeopt."""
    try:
        return function(*args)
    except USER_CODE_ERRORS as error:
        raise user_code_error(reference, what, error) from error


def call_factory(reference: str) -> Any:
    """Import and call the factory ``package.module:function``: what it raised is the user's error (exit 3, naming
    the factory and the user's frame), never edgeopt's internal error; so is a ``sys.exit`` inside it."""
    return call_user(reference, "your factory", load_entry_point(reference))


def factory_source_sha256(reference: str) -> str | None:
    """sha256 of the source file that defines the factory's module: a changed model definition is a new model."""
    module = import_user_module(reference, reference.split(":", 1)[0])
    source = inspect.getsourcefile(module)
    return sha256_file(Path(source)) if source else None


@dataclass(frozen=True)
class ModelReference:
    """What the user named: an ONNX file, or a torch factory (with its input spec)."""

    text: str
    onnx_path: Path | None
    factory: str | None

    @classmethod
    def parse(cls, text: str) -> ModelReference:
        if is_entry_point(text) and not Path(text).exists():
            return cls(text=text, onnx_path=None, factory=text)
        return cls(text=text, onnx_path=Path(text), factory=None)
