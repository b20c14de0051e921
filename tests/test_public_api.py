"""The public API is small and typed; that `import edgeopt` stays light is checked in test_layers.py."""

from __future__ import annotations

import edgeopt


def test_every_public_name_resolves() -> None:
    for name in edgeopt.__all__:
        assert getattr(edgeopt, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        edgeopt.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_backend_availability_names_the_extra() -> None:
    from edgeopt.backends import availability

    status = availability()
    assert status["onnxruntime"] == "available"
    assert status["tensorrt"].startswith("unavailable:")
    assert "pip install" in status["tensorrt"]


def test_docs_api_md_is_what_the_docstrings_say() -> None:
    """docs/api.md lists every public name with its module and docstring (scripts/api_doc.py writes it)."""
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    render = runpy.run_path(str(root / "scripts" / "api_doc.py"))["render"]
    assert (root / "docs" / "api.md").read_text() == render(), "run: python scripts/api_doc.py"


def test_readme_library_example_imports_only_from_edgeopt() -> None:
    import ast
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("## The library", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    imports = [node for node in ast.walk(ast.parse(example)) if isinstance(node, ast.ImportFrom | ast.Import)]
    modules = {node.module for node in imports if isinstance(node, ast.ImportFrom)} - {"pathlib"}
    assert modules == {"edgeopt"} and not any(isinstance(node, ast.Import) for node in imports)
    names = [alias.name for node in imports if isinstance(node, ast.ImportFrom) and node.module == "edgeopt"
             for alias in node.names]
    assert names and set(names) <= set(edgeopt.__all__)
