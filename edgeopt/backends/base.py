"""The runner lifecycle every backend shares, and the typed settings every backend's job carries.

A runner is cheap to build; it acquires its session or engine in ``activate()`` and releases
it in ``deactivate()``, and is used as a context manager.  The base class owns the state
checks and the input checks (names, shapes, dtypes); a backend writes three hooks:
``_activate``, ``_infer`` and ``_deactivate``, plus ``timed_call`` for the timing loop.

A runner's settings are a frozen dataclass (``BackendSettings``), built in the parent from a profile by
the backend's ``settings_for`` (light modules ``*_settings``), written into the worker's job as
``to_dict()`` and read back by the runner with ``from_dict()``: the dataclass's defaults are the only ones.
A failure a runner raises carries its measurement failure kind (``edgeopt.errors.failure_kind``).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from edgeopt.errors import ProviderFallbackError, UnsupportedModelError

__all__ = ["BackendSettings", "Feeds", "ProviderFallbackError", "Runner", "Shape", "UnsupportedModelError"]

Feeds = dict[str, np.ndarray]
Shape = tuple[int | str, ...]
OMIT_IF_NONE = {"omit_if_none": True}  # field metadata: left out of the job while unset
S = TypeVar("S", bound="BackendSettings")


def tensorrt_bound(variant: Any) -> bool:
    """Whether ``variant`` (an ``edgeopt.models.variants.Variant``) is a file made for TensorRT (recipe target
    ``tensorrt``: ``int8-trt-qdq``, ``int8-trt-modelopt``), not for a CPU runtime."""
    return bool(variant.provenance.get("recipe", {}).get("target") == "tensorrt")


def openvino_ir(variant: Any) -> bool:
    """Whether ``variant`` is an OpenVINO IR (NNCF's ``int8-nncf*``: ``.xml`` and ``.bin``), which only OpenVINO
    reads."""
    return bool(variant.provenance.get("format") == "openvino-ir")


@dataclasses.dataclass(frozen=True)
class BackendSettings:
    """The settings one runner reads, as the worker's job carries them (``session``, with ``backend`` first)."""

    backend: ClassVar[str] = "abstract"

    def to_dict(self) -> dict[str, Any]:
        """The job's session dict: ``backend`` and every field (an unset optional one left out)."""
        document: dict[str, Any] = {"backend": self.backend}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (value is None and f.metadata.get("omit_if_none")):
                document[f.name] = value
        return document

    @classmethod
    def from_dict(cls: type[S], document: Mapping[str, Any]) -> S:
        """The settings a job's session dict holds; keys this backend does not read are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in document.items() if k in names})


class Runner(ABC, Generic[S]):
    """One model on one backend."""

    backend = "abstract"
    settings_type: type[BackendSettings] = BackendSettings

    def __init__(self, model_path: str, settings: Mapping[str, Any] | BackendSettings) -> None:
        self.model_path = model_path
        read = settings if isinstance(settings, BackendSettings) else self.settings_type.from_dict(settings)
        self.settings: S = read  # type: ignore[assignment]
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
