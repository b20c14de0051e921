"""The board install: the wheel alone, in a fresh venv without torch, lists and checks the shipped profiles
and measures an ONNX file on host-cpu (what an embedded engineer does on a Raspberry Pi or a Jetson); the
wheel's dependencies: the ONNX Runtime flavour is an extra ([cpu] or [gpu]), never both, and torch is pinned."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests import profiles, zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # a fresh build folder: setuptools' default, the checkout's build/, keeps files of earlier builds (moved or
    # deleted modules and data) and would put them in this wheel too
    config = out / "build.cfg"
    config.write_text(f"[build]\nbuild_base = {tmp_path_factory.mktemp('build')}\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300,
                   env={**os.environ, "DIST_EXTRA_CONFIG": str(config)})
    (built,) = out.glob("edgeopt-*.whl")
    return built


def test_the_wheel_carries_profiles_types_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # the top-level hardware_profiles/ is mapped to the package data edgeopt.profiles.shipped (pyproject.toml)
    shipped = {f"edgeopt/profiles/shipped/{p.name}" for p in (ROOT / "hardware_profiles").glob("*.yaml")}
    assert {"edgeopt/profiles/shipped/host-cpu.yaml", "edgeopt/profiles/shipped/raspberry-pi-5.yaml"} <= shipped
    assert shipped <= names and not any(name.startswith("hardware_profiles/") for name in names)
    assert "edgeopt/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert {f"edgeopt/schemas/{n}.schema.json" for n in ("hardware-profile", "measurement", "run-summary")} <= names
    assert {f"edgeopt/backends/tensorrt/operators/tensorrt-{v}.json" for v in ("10.1", "10.16", "11.1")} <= names


ONNXRUNTIMES = {"onnxruntime", "onnxruntime-gpu"}


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(metadata).decode())
    return [Requirement(text) for text in message.get_all("Requires-Dist") or []]


def required(wheel: Path, *extras: str) -> set[str]:
    """The distributions ``pip install 'edgeopt[extras]'`` asks for (markers evaluated for each extra)."""
    found = set()
    for requirement in requirements(wheel):
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras or ("",)):
            found.add(requirement.name)
    return found


def test_the_onnxruntime_flavour_is_an_explicit_extra(wheel: Path) -> None:
    assert not required(wheel) & ONNXRUNTIMES  # plain edgeopt: beside a board vendor's build (JetPack)
    assert required(wheel, "cpu") & ONNXRUNTIMES == {"onnxruntime"}
    assert required(wheel, "gpu") & ONNXRUNTIMES == {"onnxruntime-gpu"}
    assert required(wheel, "gpu", "torch", "openvino", "tensorrt", "report") & ONNXRUNTIMES == {"onnxruntime-gpu"}


def test_the_torch_extra_is_pinned(wheel: Path) -> None:
    (torch,) = [r for r in requirements(wheel) if r.name == "torch"]
    assert str(torch.specifier) == "==2.13.0"


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("extra, runtime", [("gpu", "onnxruntime-gpu"), ("cpu", "onnxruntime")])
def test_pip_resolves_one_onnxruntime_per_extra(wheel: Path, extra: str, runtime: str) -> None:
    """What pip itself would install (--dry-run --report, into nothing: --ignore-installed)."""
    if not _index_reachable():
        pytest.skip("pypi.org is not reachable: pip cannot resolve the extras here")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", "-", f"{wheel}[{extra}]"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(done.stdout)["install"]}
    assert "edgeopt" in names and names & ONNXRUNTIMES == {runtime}, sorted(names)


@pytest.mark.slow
def test_a_torch_free_venv_runs_the_board_commands(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "board"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout's may leak in
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[cpu]"],
                         capture_output=True, text=True, timeout=900, env=clean)
    assert pip.returncode == 0, pip.stderr[-2000:]
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=60, env=clean).returncode != 0
    edgeopt = str(venv / "bin" / "edgeopt")
    work = tmp_path / "work"  # not the checkout: nothing from the source tree can leak in
    work.mkdir()
    listed = subprocess.run([edgeopt, "profiles", "list"], cwd=work, capture_output=True, text=True, timeout=120,
                            env=clean)
    assert listed.returncode == 0 and "host-cpu" in listed.stdout and "raspberry-pi-5" in listed.stdout, listed.stderr
    checked = subprocess.run([edgeopt, "profiles", "check"], cwd=work, capture_output=True, text=True, timeout=120,
                             env=clean)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    model = zoo.tiny_conv_model(work / "some.onnx")
    user = work / "mine"
    user.mkdir()
    (user / "bench-board.yaml").write_text(profiles.profile_yaml("bench-board", max_seconds=0.3))
    ran = subprocess.run([edgeopt, "run", str(model), "--profile", "bench-board", "--variant", "fp32",
                          "--variant", "int8-dynamic", "--out", str(work / "out")], cwd=work, capture_output=True,
                         text=True, timeout=600, env={**clean, "EDGEOPT_PROFILE_PATH": str(user)})
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert (work / "out" / "summary.json").is_file() and "verdict: PASS" in ran.stdout
    ran = subprocess.run([edgeopt, "run", str(model), "--profile", "host-cpu", "--variant", "fp32", "--out",
                          str(work / "host")], cwd=work, capture_output=True, text=True, timeout=600, env=clean)
    assert ran.returncode in (0, 5), ran.stdout[-3000:] + ran.stderr[-3000:]  # 5: a busy CI machine (invalid)
    assert (work / "host" / "summary.json").is_file()
