"""The published JSON Schemas (edgeopt/schemas, docs/schemas): up to date with the pydantic models, pointed at
by every shipped profile, and what an independent validator (``jsonschema``) accepts and refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from edgeopt.cli.schemas import SCHEMAS, schema_file_name, schema_text, shipped_schema_path
from edgeopt.profiles.schema import load_profile, shipped_profiles_dir
from tests import profiles, zoo

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(shipped_profiles_dir().glob("*.yaml"))
SCHEMA_LINE = "# yaml-language-server: $schema=../edgeopt/schemas/hardware-profile.schema.json"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(shipped_schema_path(name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_published_schemas_are_those_of_the_models(name: str) -> None:
    for folder in (ROOT / "edgeopt" / "schemas", ROOT / "docs" / "schemas"):
        path = folder / schema_file_name(name)
        assert path.is_file() and path.read_text() == schema_text(name), \
            f"{path.relative_to(ROOT)} is out of date with its model: run python scripts/json_schemas.py"


def test_the_regeneration_script_has_nothing_to_do() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "json_schemas.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr
    assert shipped_schema_path("hardware-profile") == ROOT / "edgeopt" / "schemas" / "hardware-profile.schema.json"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_shipped_profile_points_at_the_schema_and_validates(path: Path) -> None:
    assert path.read_text().splitlines()[0] == SCHEMA_LINE
    assert (path.parent / SCHEMA_LINE.split("$schema=")[1]).resolve() == shipped_schema_path("hardware-profile")
    errors = [f"{e.json_path}: {e.message}" for e in validator("hardware-profile").iter_errors(
        yaml.safe_load(path.read_text()))]
    assert not errors, errors


def test_the_schema_line_does_not_change_the_profile(tmp_path: Path) -> None:
    shipped = shipped_profiles_dir() / "host-cpu.yaml"
    bare = tmp_path / "host-cpu.yaml"
    bare.write_text("\n".join(shipped.read_text().splitlines()[1:]) + "\n")
    assert load_profile(bare).digest() == load_profile(shipped).digest() == load_profile("host-cpu").digest()


def test_a_wrong_profile_fails_with_the_schemas_message() -> None:
    document = yaml.safe_load((shipped_profiles_dir() / "host-cpu.yaml").read_text())
    document["bench"]["max_seconds"] = "fast"
    document["budgets"]["p95"] = 12
    del document["runtime"]["intra_op_threads"]
    found = {e.json_path: e.message for e in validator("hardware-profile").iter_errors(document)}
    assert found == {
        "$.bench.max_seconds": "'fast' is not of type 'number'",
        "$.budgets": "Additional properties are not allowed ('p95' was unexpected)",
        "$.runtime": "'intra_op_threads' is a required property",
    }


def test_edgeopt_profiles_schema_prints_the_shipped_schema() -> None:
    done = subprocess.run([sys.executable, "-m", "edgeopt", "profiles", "schema"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == shipped_schema_path("hardware-profile").read_text()
    assert json.loads(done.stdout)["title"] == "HardwareProfile"


@pytest.mark.slow
def test_a_run_folder_validates_against_the_result_schemas(tmp_path: Path) -> None:
    model = zoo.tiny_conv_model(tmp_path / "tiny.onnx")
    profile = profiles.write_profile(tmp_path, "fast", max_seconds=0.3)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile), "--variant",
                           "fp32", "--variant", "int8-dynamic", "--out", str(out), "--json"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads(done.stdout) == summary  # run --json prints summary.json: its schema_version, kind "run"
    assert not [e.message for e in validator("run-summary").iter_errors(summary)]
    measurements = sorted((out / "measurements").glob("*.json"))
    assert len(measurements) == 2
    for path in measurements:
        errors = [f"{e.json_path}: {e.message}" for e in validator("measurement").iter_errors(json.loads(
            path.read_text()))]
        assert not errors, (path.name, errors)
    wrong = {**summary, "schema_version": 2}
    assert [e.message for e in validator("run-summary").iter_errors(wrong)] == ["1 was expected"]
