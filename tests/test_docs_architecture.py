"""docs/architecture.md's module table names every module of the package, under its layer, and no module
that is gone.

Grammar of the table's "modules" column: each backticked name is a module of that layer's subpackage
(``edgeopt.<layer>.<name>``; a layer without a folder, ``errors`` and ``roof``, names top-level modules,
``errors.py`` or ``errors``); ```x/` (`a`, `b`)`` is a subpackage ``x`` with its modules ``a`` and ``b`` (``x/y/``
a folder inside it); a name
with ``/`` or ``*`` is package data (``shipped/*.yaml``, ``operators/``) and other parentheses are remarks.
Package ``__init__`` modules are not listed: the prose says what each holds.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_layers import PACKAGE, modules

DOC = PACKAGE.parent / "docs" / "architecture.md"
ROW = re.compile(r"^\| `(?P<layer>\w+)` \| (?P<modules>[^|]*) \|")
SUBPACKAGE = re.compile(r"`(?P<name>\w+(?:/\w+)*)/`\s*\((?P<inside>[^)]*)\)")
NAME = re.compile(r"`([^`]+)`")


def _names(text: str) -> list[str]:
    """The module names of backticked tokens (package data and remarks dropped)."""
    names = []
    for token in NAME.findall(text):
        if "/" in token or "*" in token:
            continue
        assert re.fullmatch(r"\w+(\.py)?", token), f"docs/architecture.md: `{token}` is not a module name"
        names.append(token.removesuffix(".py"))
    return names


def listed_modules(doc: Path = DOC) -> dict[str, str]:
    """Module -> its layer, as docs/architecture.md's table lists them."""
    listed: dict[str, str] = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        row = ROW.match(line)
        if not row or row["layer"] == "layer":
            continue
        layer, cell = row["layer"], row["modules"]
        package = f"edgeopt.{layer}" if (PACKAGE / layer).is_dir() else "edgeopt"
        for group in SUBPACKAGE.finditer(cell):
            for name in _names(re.sub(r"\([^)]*\)", "", group["inside"])):
                listed[f"{package}.{group['name'].replace('/', '.')}.{name}"] = layer
        for name in _names(re.sub(r"\([^)]*\)", "", SUBPACKAGE.sub("", cell))):
            listed[f"{package}.{name}"] = layer
    return listed


def test_the_module_table_lists_every_module_and_no_gone_one() -> None:
    table = modules()
    expected = {name for name, path in table.items() if path.name != "__init__.py"}
    listed = listed_modules()
    missing = sorted(expected - set(listed))
    gone = sorted(set(listed) - expected)
    assert not missing and not gone, f"docs/architecture.md's module table: missing {missing}, gone {gone}"


def test_the_grammar_reads_subpackages_data_and_remarks(tmp_path: Path) -> None:
    doc = tmp_path / "architecture.md"
    doc.write_text("| layer | modules | holds |\n|---|---|---|\n| `errors` | `errors.py` | x |\n"
                   "| `profiles` | `schema` (re-exported by `edgeopt.profiles`), `shipped/*.yaml` (data) | y |\n"
                   "| `backends` | `base`, `tensorrt/` (one subpackage: `runner`, `operators/`) | z |\n"
                   "| `roof` | `pytest_plugin`, `__main__` | w |\n")
    assert listed_modules(doc) == {
        "edgeopt.errors": "errors", "edgeopt.profiles.schema": "profiles", "edgeopt.backends.base": "backends",
        "edgeopt.backends.tensorrt.runner": "backends", "edgeopt.pytest_plugin": "roof", "edgeopt.__main__": "roof"}
