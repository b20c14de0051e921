"""``InputSpec``: one model input's name, shape and dtype (standard library only: the torch runner's worker
imports it, and its memory is measured)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InputSpec"]


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, shape (ints; strings for symbolic dims) and numpy dtype name."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """True when ``shape`` has this rank and equals every fixed dim (symbolic dims match anything)."""
        return len(shape) == len(self.shape) and all(
            isinstance(want, str) or want == got for want, got in zip(self.shape, shape, strict=True)
        )
