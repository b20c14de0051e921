"""The published JSON Schemas of edgeopt's files, generated from the pydantic models that validate them.

- ``hardware-profile``: :class:`edgeopt.profiles.schema.HardwareProfile`, a profile YAML file;
- ``measurement``: :class:`edgeopt.measure.results.Measurement`, ``measurements/*.json``;
- ``run-summary``: :class:`edgeopt.reports.run_summary.RunSummary`, a run's ``summary.json``.

They ship inside the package (``edgeopt/schemas/<name>.schema.json``, package data: every shipped profile's
first line points an editor at the profile schema with ``# yaml-language-server: $schema=...``) and in
``docs/schemas/``.  ``scripts/json_schemas.py`` regenerates both copies; ``tests/test_json_schemas.py`` fails
when they differ from :func:`schema_text`.  A schema says what each field holds; the models check more
(regular expressions compile, ``min <= opt <= max``, stored statistics are those of the stored samples).

Light to import: the models are imported when a schema is generated.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
from pathlib import Path
from typing import Any

__all__ = ["JSON_SCHEMA_DIALECT", "SCHEMAS", "generate_schema", "schema_file_name", "schema_text",
           "shipped_schema", "shipped_schema_path"]

#: name -> (module, model class) of every published schema.
SCHEMAS: dict[str, tuple[str, str]] = {
    "hardware-profile": ("edgeopt.profiles.schema", "HardwareProfile"),
    "measurement": ("edgeopt.measure.results", "Measurement"),
    "run-summary": ("edgeopt.reports.run_summary", "RunSummary"),
}

#: The dialect pydantic's ``model_json_schema()`` generates.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_file_name(name: str) -> str:
    """``hardware-profile`` -> ``hardware-profile.schema.json``."""
    return f"{name}.schema.json"


def generate_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of schema ``name`` (a key of :data:`SCHEMAS`), from its model, with ``$schema``."""
    module, model = SCHEMAS[name]
    schema = getattr(importlib.import_module(module), model).model_json_schema(mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def schema_text(name: str) -> str:
    """The file text of schema ``name``: stable JSON (sorted keys, two-space indent, final newline)."""
    return json.dumps(generate_schema(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def shipped_schema_path(name: str) -> Path:
    """Where the package holds schema ``name`` (package data ``edgeopt/schemas``; in the wheel too)."""
    return Path(str(importlib.resources.files("edgeopt") / "schemas" / schema_file_name(name)))


def shipped_schema(name: str) -> str:
    """The text of the shipped schema ``name``."""
    return shipped_schema_path(name).read_text(encoding="utf-8")
