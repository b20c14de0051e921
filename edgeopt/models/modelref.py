"""Resolve a model reference: a ``package.module:factory`` string or a path to an ``.onnx`` file."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeopt.core.fileio import sha256_file
from edgeopt.errors import ConfigError
from edgeopt.models.calibration import InputSpec

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_entry_point(reference: str) -> bool:
    return bool(_ENTRY_POINT.match(reference)) and not reference.endswith(".onnx")


def load_entry_point(reference: str) -> Callable[..., Any]:
    """Import ``package.module:attribute`` and return the attribute; errors name the reference."""
    if not is_entry_point(reference):
        raise ConfigError(f"{reference}: expected 'package.module:function'")
    module_name, attribute = reference.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{reference}: cannot import module '{module_name}': {error}") from error
    if not hasattr(module, attribute):
        raise ConfigError(f"{reference}: module '{module_name}' has no attribute '{attribute}'")
    return getattr(module, attribute)  # type: ignore[no-any-return]


def parse_input_spec(text: str) -> InputSpec:
    """Parse ``name:1x3x224x224[:float32]``; a non-numeric dim (e.g. ``batch``) is symbolic."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ConfigError(f"--input {text!r}: expected name:DIMxDIM[:dtype], e.g. input:1x3x224x224:float32")
    dims: list[int | str] = []
    for dim in parts[1].split("x"):
        if re.fullmatch(r"[+-]?\d+", dim.strip()):
            if int(dim) < 1:
                raise ConfigError(f"--input {text!r}: dimension {dim!r} must be a whole number >= 1")
            dims.append(int(dim))
        elif re.fullmatch(r"[A-Za-z_]\w*", dim):
            dims.append(dim)  # a symbolic name: left for the model's own value or the other sources to set
        else:
            raise ConfigError(f"--input {text!r}: dimension {dim!r} is neither a whole number nor a name")
    return InputSpec(name=parts[0], shape=tuple(dims), dtype=parts[2] if len(parts) == 3 else "float32")


def factory_input_specs(reference: str) -> list[InputSpec] | None:
    """The ``input_spec()`` a factory's module declares, if any: a list of (name, shape, dtype)."""
    module_name = reference.split(":", 1)[0]
    module = importlib.import_module(module_name)
    declare = getattr(module, "input_spec", None)
    if declare is None:
        return None
    return [InputSpec(name=name, shape=tuple(shape), dtype=dtype) for name, shape, dtype in declare()]


def factory_source_sha256(reference: str) -> str | None:
    """sha256 of the source file that defines the factory's module: a changed model definition is a new model."""
    module = importlib.import_module(reference.split(":", 1)[0])
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
