"""The board install: the wheel alone, in a fresh venv without torch, lists and checks the shipped profiles
and measures an ONNX file on host-cpu (what an embedded engineer does on a Raspberry Pi or a Jetson)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import profiles, zoo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (built,) = out.glob("edgeopt-*.whl")
    return built


def test_the_wheel_carries_profiles_types_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edgeopt/profiles/shipped/host-cpu.yaml" in names and "edgeopt/profiles/shipped/raspberry-pi-5.yaml" in names
    assert "edgeopt/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


@pytest.mark.slow
def test_a_torch_free_venv_runs_the_board_commands(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "board"
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout's may leak in
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
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
