"""The runner lifecycle every backend shares.

A runner is cheap to build; it acquires its session or engine in ``activate()`` and releases
it in ``deactivate()``, and is used as a context manager.  The base class owns the state
checks and the input checks (names, shapes, dtypes); a backend writes three hooks:
``_activate``, ``_infer`` and ``_deactivate``, plus ``timed_call`` for the timing loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]


class UnsupportedModelError(Exception):
    """The backend cannot convert or compile this model; the message names the operator or node."""
Shape = tuple[int | str, ...]


class Runner(ABC):
    """One model on one backend."""

    backend = "abstract"

    def __init__(self, model_path: str, settings: dict[str, Any]) -> None:
        self.model_path = model_path
        self.settings = dict(settings)
        self.is_active = False
        self.inputs: dict[str, tuple[Shape, str]] = {}
        self.details: dict[str, Any] = {}

    def activate(self) -> None:
        if self.is_active:
            raise RuntimeError(f"{self.backend} runner for {self.model_path} is already active")
        self._activate()
        self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.deactivate()

    def check_feeds(self, feeds: Feeds) -> None:
        """Names, dtypes and fixed dimensions of ``feeds`` against the model's inputs."""
        if set(feeds) != set(self.inputs):
            raise ValueError(f"{self.model_path}: inputs {sorted(feeds)} given, the model takes {sorted(self.inputs)}")
        for name, (shape, dtype) in self.inputs.items():
            value = feeds[name]
            if str(value.dtype) != dtype:
                raise ValueError(f"{self.model_path}: input '{name}' has dtype {value.dtype}, the model takes {dtype}")
            if len(value.shape) != len(shape) or any(
                isinstance(d, int) and d != v for d, v in zip(shape, value.shape, strict=True)
            ):
                raise ValueError(f"{self.model_path}: input '{name}' has shape {value.shape}, the model takes {shape}")

    def infer(self, feeds: Feeds) -> list[np.ndarray]:
        if not self.is_active:
            raise RuntimeError(f"{self.backend} runner for {self.model_path} is not active; use it in a with-block")
        self.check_feeds(feeds)
        return self._infer(feeds)

    @abstractmethod
    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        """The bare backend call the timing loop wraps: no checks, no allocation beyond the runtime's own."""

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, feeds: Feeds) -> list[np.ndarray]: ...

    @abstractmethod
    def _deactivate(self) -> None: ...
