"""What a model factory (``package.module:function``) returns: a module, or ``(module, example_inputs)``.

Example inputs are a dict ``{name: tensor}`` (names bind to ``forward``'s parameters) or a tuple of tensors
(bound to ``forward``'s positional parameters in order).  They declare the inputs when ``--input`` does not (every
dimension fixed at the example's size; before the module's ``input_spec()``, which may serve several factories),
and they are the first sample the export's parity check runs.  Importing this module does not import torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeopt.errors import ConfigError
from edgeopt.models.input_spec import InputSpec
from edgeopt.models.modelref import InputDeclaration, call_factory, factory_input_specs


@dataclass(frozen=True)
class FactoryResult:
    """The module a factory made, and the example inputs it returned with it (by input name), if any."""

    reference: str
    module: Any
    examples: Mapping[str, Any] | None

    def example_feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """The example inputs as one numpy sample (nothing when the factory returned none)."""
        if self.examples:
            yield {name: _to_numpy(value) for name, value in self.examples.items()}

    def declaration(self) -> InputDeclaration:
        """Inputs declared by the examples: their names, shapes (all fixed) and dtypes."""
        assert self.examples is not None
        return InputDeclaration(tuple(InputSpec(name, tuple(int(d) for d in array.shape), str(array.dtype))
                                      for name, array in next(self.example_feeds()).items()), {})


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _is_module(value: Any) -> bool:
    return callable(getattr(value, "forward", None)) and callable(getattr(value, "eval", None))


def factory_result(reference: str) -> FactoryResult:
    """Call the factory (its own errors are the user's: exit 3) and split what it returned.  Each call makes a new
    module (a runner may convert one to another precision in place)."""
    made = call_factory(reference)
    if _is_module(made):
        return FactoryResult(reference, made, None)
    if isinstance(made, tuple) and len(made) == 2 and _is_module(made[0]):
        module, examples = made
        if isinstance(examples, Mapping):
            return FactoryResult(reference, module, dict(examples))
        if isinstance(examples, (tuple, list)):
            names = [n for n, p in inspect.signature(module.forward).parameters.items()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(examples) > len(names):
                raise ConfigError(f"{reference}: {len(examples)} example inputs, but forward takes "
                                  f"{len(names)} positional parameter(s) ({', '.join(names)})")
            return FactoryResult(reference, module, dict(zip(names, examples, strict=False)))
        raise ConfigError(f"{reference}: example inputs must be a dict {{name: tensor}} or a tuple of tensors, "
                          f"got {type(examples).__name__}")
    raise ConfigError(f"{reference}: the factory returned {type(made).__name__}; expected a torch.nn.Module or "
                      "(module, example_inputs)")


def declared_inputs(made: FactoryResult, given: InputDeclaration | None) -> InputDeclaration:
    """A factory's inputs, in order: ``given`` (``--input``), the example inputs it returned with its module, its
    module's ``input_spec()``; ConfigError (exit 2) saying how to declare them when there is none."""
    if given is not None and given.specs:
        return given
    if made.examples is not None:
        return made.declaration()
    declared = factory_input_specs(made.reference)
    if declared is None:
        raise ConfigError(f"{made.reference}: give --input name:1x3x224x224[:float32], return (module, "
                          "example_inputs) from the factory, or define input_spec() in its module")
    return declared
