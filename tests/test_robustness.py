"""Input shifts: what each does to the images, determinism, and a real run with per-shift rows."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import ConfigError
from edgeopt.evaluate.robustness import (
    DEFAULT_SEVERITY,
    Shift,
    ValueSpace,
    apply_shift,
    blur,
    parse_shifts,
    value_space,
)
from edgeopt.reports.html_report import render_html
from edgeopt.reports.run_data import load_run
from tests.test_cli import write_profile

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "calibration_data" / "digits"
UNIT = ValueSpace(0.0, 1.0)


def images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.6, size=(4, 1, 8, 8)).astype(np.float32)


def test_parse_shifts() -> None:
    assert [s.name for s in parse_shifts(["all"])] == list(DEFAULT_SEVERITY)
    assert parse_shifts(["noise:0.2", "noise:0.2", "blur"]) == (Shift("noise", 0.2), Shift("blur", 1.0))
    assert Shift("noise", 0.2).label == "noise:0.2" and Shift("noise", 0.1).label == "noise"
    for bad in ("fog", "noise:x", "noise:-1"):
        with pytest.raises(ConfigError, match="--shift"):
            parse_shifts([bad])


def test_brightness_adds_a_share_of_the_range_and_clips() -> None:
    x = images()
    out = apply_shift(x, Shift("brightness", 0.3), UNIT)
    np.testing.assert_allclose(out, np.clip(x + 0.3, 0, 1), atol=1e-6)
    assert apply_shift(x, Shift("brightness", 0.9), UNIT).max() == 1.0
    assert out.dtype == x.dtype and out.shape == x.shape


def test_contrast_scales_deviations_from_each_image_mean() -> None:
    x = images()
    out = apply_shift(x, Shift("contrast", 0.5), UNIT)
    np.testing.assert_allclose(out.mean(axis=(-2, -1)), x.mean(axis=(-2, -1)), atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(-2, -1)), 0.5 * x.std(axis=(-2, -1)), rtol=1e-5)


def test_noise_is_seeded_gaussian_of_the_documented_sigma() -> None:
    x = np.full((64, 1, 16, 16), 0.5, dtype=np.float32)
    a = apply_shift(x, Shift("noise", 0.1), UNIT)
    assert np.array_equal(a, apply_shift(x, Shift("noise", 0.1), UNIT))  # same seed, same images
    assert not np.array_equal(a, apply_shift(x, Shift("noise", 0.1), UNIT, seed=1))
    assert float(np.std(a - x)) == pytest.approx(0.1, rel=0.03)


def test_blur_is_a_normalised_separable_gaussian() -> None:
    flat = np.full((1, 1, 8, 8), 0.4)
    np.testing.assert_allclose(blur(flat, 1.0), flat)  # a constant image stays constant
    spike = np.zeros((1, 1, 9, 9))
    spike[..., 4, 4] = 1.0
    out = blur(spike, 1.0)
    assert out.sum() == pytest.approx(1.0) and out[..., 4, 4] < 0.2
    np.testing.assert_allclose(out[0, 0], out[0, 0].T)  # the same filter along H and W
    g = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    g /= g.sum()
    np.testing.assert_allclose(out[0, 0, 1:8, 4], g * g[3])  # separable: the column through the centre


def test_normalised_inputs_are_shifted_in_pixel_space() -> None:
    space = ValueSpace(0.0, 1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pixels = np.random.default_rng(0).uniform(0, 0.5, size=(2, 3, 4, 4))
    normalised = ((pixels - np.array(space.mean)[:, None, None]) / np.array(space.std)[:, None, None])
    out = apply_shift(normalised.astype(np.float32), Shift("brightness", 0.2), space)
    back = out * np.array(space.std)[:, None, None] + np.array(space.mean)[:, None, None]
    np.testing.assert_allclose(back, pixels + 0.2, atol=1e-5)


def test_value_space_choice(tmp_path: Path) -> None:
    assert value_space(images()).source.startswith("eval values all in [0, 1]")
    assert (value_space(images() * 255).low, value_space(images() * 255).high) == pytest.approx((51, 153), abs=1)
    assert value_space(images(), declared=(0, 255)).high == 255
    shipped = value_space(images(), calibration=str(ROOT / "calibration_data" / "images"))
    assert shipped.mean == pytest.approx((0.485, 0.456, 0.406)) and shipped.high == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="shift-range"):
        value_space(images(), declared=(1, 0))


def test_run_with_a_shift_gives_per_shift_rows(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, name="fastshift", seconds=0.2)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "edgeopt", "run", "edgeopt.zoo.digits:digits_cnn", "--profile", str(profile),
         "--calibration", str(DIGITS), "--eval", str(DIGITS / "eval.npz"), "--variant", "fp32",
         "--variant", "int8-static-minmax", "--metric", "top1", "--metric", "top5", "--shift", "noise",
         "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "robustness: top1 under input shift" in done.stdout and "noise" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluation"]["metrics"] == ["top1", "top5"]
    rows = {r["variant"]: r for r in summary["rows"]}
    int8 = rows["int8-static-minmax"]
    assert [m["metric"] for m in int8["metrics"]] == ["top1", "top5"]
    assert int8["metrics"][0]["lower"] <= int8["metrics"][0]["value"] <= int8["metrics"][0]["upper"]
    assert {(s["shift"], s["metric"]) for s in int8["shifts"]} == {("noise", "top1"), ("noise", "top5")}
    noise = next(s for s in int8["shifts"] if s["metric"] == "top1")
    assert noise["delta_lower"] <= noise["delta"] <= noise["delta_upper"] and "fragile" in noise
    fp32_noise = next(s for s in rows["fp32"]["shifts"] if s["metric"] == "top1")
    assert fp32_noise["delta"] == 0.0 and fp32_noise["extra_drop"] == 0.0
    assert (out / "measurements" / "int8-static-minmax__fastshift.shift-noise.outputs.npz").exists()
    assert (out / "reference_inputs.shift-noise.npz").exists()
    with (out / "results.csv").open() as handle:
        record = next(r for r in csv.DictReader(handle) if r["variant"] == "int8-static-minmax")
    assert record["metric"] == "top1" and float(record["metric_value"]) == pytest.approx(int8["metrics"][0]["value"])
    assert record["noise/top1_fragile"] in ("true", "false")
    page = render_html(load_run(out))  # the HTML report carries the same table
    section = page[page.index("<h3>robustness under input shift</h3>"):]
    assert "<th>noise" in section and "int8-static-minmax" in section.split("</table>")[0]
    # a rerun reuses the measurements (the shifted outputs are there)
    again = subprocess.run(done.args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "done earlier, skipped" in again.stderr


def test_shift_without_eval_is_a_usage_error(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, name="fastshift2", seconds=0.2)
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", "edgeopt.zoo.digits:digits_cnn", "--profile",
                           str(profile), "--shift", "noise", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "--eval" in done.stderr and not (tmp_path / "o").exists()
