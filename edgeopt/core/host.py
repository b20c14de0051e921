"""The fingerprint of the host a measurement runs on, and which precisions its CPU runs natively fast.

This module is imported inside the measurement worker, so it stays light: the standard library and
psutil only (no pydantic, numpy, torch or onnxruntime).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from edgeopt.core.isa import native_precisions, pair_sums_saturate

__all__ = [
    "HostFingerprint",
    "fingerprint_from_root",
    "host_fingerprint",
    "int8_pair_sums_saturate",
    "normalise_arch",
    "precision_support",
]

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")

_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "armv8": "aarch64",
}

# Arm Ltd. (implementer 0x41) CPU part numbers, from the Arm Technical Reference Manuals (MIDR_EL1).
_ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}

# Where the identity files are, relative to the root of a file system ("/" on the running host).
_CPUINFO = Path("proc/cpuinfo")
_DEVICE_TREE_MODEL = Path("proc/device-tree/model")
_MEMINFO = Path("proc/meminfo")
_TEGRA_RELEASE = Path("etc/nv_tegra_release")
_ROOT = Path("/")


def normalise_arch(machine: str) -> str:
    """Map ``platform.machine()`` spellings (AMD64, arm64, ...) to 'x86_64' or 'aarch64'."""
    return _ARCH_ALIASES.get(machine.strip().lower(), machine.strip().lower() or "unknown")


@dataclass(frozen=True)
class HostFingerprint:
    """What a measurement ran on: OS, CPU, memory, GPUs and board model.

    ``memory_total_gb`` counts GiB (2**30 bytes) as ``free -g`` does, so an "8 GB" board shows about 7.4.
    """

    hostname: str
    os: str
    os_release: str
    arch: str
    cpu_model: str
    cpu_flags: tuple[str, ...]
    logical_cores: int
    physical_cores: int | None
    memory_total_gb: float
    gpus: tuple[str, ...] = ()
    device_model: str | None = None
    python_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples become lists)."""
        data = asdict(self)
        data["cpu_flags"] = list(self.cpu_flags)
        data["gpus"] = list(self.gpus)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostFingerprint:
        """Rebuild a fingerprint from ``to_dict()`` output; optional keys may be missing."""
        physical = data.get("physical_cores")
        device_model = data.get("device_model")
        return cls(
            hostname=str(data.get("hostname", "")),
            os=str(data.get("os", "")),
            os_release=str(data.get("os_release", "")),
            arch=normalise_arch(str(data.get("arch", ""))),
            cpu_model=str(data.get("cpu_model", "")),
            cpu_flags=tuple(sorted(str(f) for f in data.get("cpu_flags", ()))),
            logical_cores=int(data.get("logical_cores", 0)),
            physical_cores=None if physical is None else int(physical),
            memory_total_gb=float(data.get("memory_total_gb", 0.0)),
            gpus=tuple(str(g) for g in data.get("gpus", ())),
            device_model=None if device_model is None else str(device_model),
            python_version=str(data.get("python_version", "")),
        )

    def summary(self) -> str:
        """One line, e.g. 'AMD EPYC, x86_64, 2 logical cores, 23.4 GB, Linux'."""
        parts = [self.device_model or self.cpu_model or "unknown CPU"]
        if self.device_model and self.cpu_model:
            parts.append(self.cpu_model)
        parts += [self.arch, f"{self.logical_cores} logical cores", f"{self.memory_total_gb:.1f} GB"]
        parts += list(self.gpus)
        parts.append(self.os)
        return ", ".join(parts)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """First value of each key in /proc/cpuinfo (keys lower-cased)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _cpu_model(fields: dict[str, str], *, this_host: bool = True) -> str:
    """x86 'model name'; on ARM the core named from 'CPU part' (plus 'Hardware' when the kernel gives a real one).
    With neither, this host's ``platform`` names it (``this_host``), else 'unknown'."""
    if fields.get("model name"):
        return fields["model name"]
    part = fields.get("cpu part", "").lower()
    core = _ARM_PARTS.get(part) if fields.get("cpu implementer", "").lower() == "0x41" else None
    if core is None and part:
        core = f"ARM CPU part {part}"
    hardware = fields.get("hardware", "")
    if fields.get("model", "").startswith("Raspberry Pi"):
        # Raspberry Pi kernels write 'Hardware : BCM2835' on every model, a Pi 5's BCM2712 included
        # (raspberrypi/bookworm-feedback issue 129): it names no SoC, so it is left out.
        hardware = ""
    if core and hardware:
        return f"{core} ({hardware})"
    if core or hardware:
        return core or hardware
    if not this_host:
        return "unknown"
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags(fields: dict[str, str]) -> tuple[str, ...]:
    raw = fields.get("flags") or fields.get("features") or ""
    return tuple(sorted(set(raw.split())))


def _cpuinfo_arch(fields: dict[str, str]) -> str:
    """The architecture a /proc/cpuinfo text describes: x86 kernels write 'flags', arm64 kernels
    'CPU architecture: 8' and 'Features' with asimd ('unknown' for anything else)."""
    if "flags" in fields:
        return "x86_64"
    if fields.get("cpu architecture", "").startswith("8") or "asimd" in fields.get("features", "").split():
        return "aarch64"
    return "unknown"


def _cpuinfo_processors(text: str) -> int:
    """The 'processor' entries of a /proc/cpuinfo text (one per online logical CPU)."""
    return sum(1 for line in text.splitlines() if line.partition(":")[0].strip().lower() == "processor")


def _meminfo_gb(text: str | None) -> float:
    """MemTotal of a /proc/meminfo text in GiB (0.0 when absent)."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MemTotal" and value.split():
            return round(int(value.split()[0]) * 1024 / 2**30, 2)
    return 0.0


def _device_model(root: Path = _ROOT) -> str | None:
    text = _read_text(root / _DEVICE_TREE_MODEL)
    if text is None:
        return None
    model = text.replace("\x00", "").strip()
    return model or None


def _nvidia_smi_gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _jetson_gpu(device_model: str | None, root: Path = _ROOT) -> str | None:
    """A Jetson's integrated GPU is invisible to nvidia-smi on older JetPacks; name it from the board."""
    is_jetson = (device_model is not None and "jetson" in device_model.lower()) or (root / _TEGRA_RELEASE).exists()
    if not is_jetson:
        return None
    return f"{device_model or 'NVIDIA Jetson'} integrated GPU"


def _collect() -> HostFingerprint:
    fields = _cpuinfo_fields(_read_text(_ROOT / _CPUINFO) or "")
    device_model = _device_model()
    gpus = _nvidia_smi_gpus()
    jetson = _jetson_gpu(device_model)
    if jetson is not None and not gpus:
        gpus.append(jetson)
    try:
        hostname = socket.gethostname()
    except OSError:
        hostname = platform.node()
    return HostFingerprint(
        hostname=hostname,
        os=platform.system(),
        os_release=platform.release(),
        arch=normalise_arch(platform.machine()),
        cpu_model=_cpu_model(fields),
        cpu_flags=_cpu_flags(fields),
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
        memory_total_gb=round(psutil.virtual_memory().total / 2**30, 2),
        gpus=tuple(gpus),
        device_model=device_model,
        python_version=platform.python_version() or sys.version.split()[0],
    )


@functools.lru_cache(maxsize=1)
def host_fingerprint() -> HostFingerprint:
    """The fingerprint of this host (computed once per process)."""
    return _collect()


def fingerprint_from_root(root: str | os.PathLike[str]) -> HostFingerprint:
    """The fingerprint of the machine whose identity files are copied under ``root``, laid out as on it
    (``proc/cpuinfo``, ``proc/device-tree/model``, ``proc/meminfo``, ``etc/nv_tegra_release``; any may be
    missing): how edgeopt identifies a board, checked on another machine (tests/data/boards).

    CPU model, flags and device model are read as :func:`host_fingerprint` reads them; what the running
    system would otherwise tell comes from the files too: the architecture from the cpuinfo text, the
    logical cores from its ``processor`` entries (0 when it has none), memory from ``MemTotal`` (0.0 when
    absent). No GPU query is run; a Jetson's integrated GPU is named as on the board. The hostname is the
    folder's name; OS fields are empty.
    """
    base = Path(root)
    text = _read_text(base / _CPUINFO) or ""
    fields = _cpuinfo_fields(text)
    device_model = _device_model(base)
    jetson = _jetson_gpu(device_model, base)
    return HostFingerprint(
        hostname=base.name,
        os="",
        os_release="",
        arch=_cpuinfo_arch(fields),
        cpu_model=_cpu_model(fields, this_host=False),
        cpu_flags=_cpu_flags(fields),
        logical_cores=_cpuinfo_processors(text),
        physical_cores=None,
        memory_total_gb=_meminfo_gb(_read_text(base / _MEMINFO)),
        gpus=() if jetson is None else (jetson,),
        device_model=device_model,
    )


def precision_support(host: HostFingerprint) -> dict[str, bool]:
    """Whether the host CPU has native fast kernels for each of 'fp32', 'fp16', 'bf16', 'int8'
    (the rules and their sources: :mod:`edgeopt.core.isa`)."""
    return native_precisions(host.arch, host.cpu_flags)


def int8_pair_sums_saturate(host: HostFingerprint) -> bool:
    """Whether INT8 matrix products on this CPU can saturate (x86 without VNNI or AMX: ``VPMADDUBSW``'s
    16-bit pair sums; see :mod:`edgeopt.core.isa`)."""
    return pair_sums_saturate(host.arch, host.cpu_flags)
