"""The one type of a progress sink: a callable that takes one line (``print``, a logger method, a list's append)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Log"]

Log = Callable[[str], None]
