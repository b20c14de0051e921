"""Write ``docs/api.md``: every public name of ``edgeopt`` (``edgeopt.__all__``) with the module that defines it
and the first paragraph of its docstring.  ``tests/test_public_api.py`` checks that the file is what this writes.

Usage: ``python scripts/api_doc.py`` from the repository root.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "api.md"


def first_paragraph(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def render() -> str:
    sys.path.insert(0, str(ROOT))
    edgeopt = importlib.import_module("edgeopt")
    lines = ["# The public API", "",
             "Everything below is importable from `edgeopt` itself (`from edgeopt import run_pipeline`); `import "
             "edgeopt` stays light (no torch, no onnxruntime) because each name is loaded on first use. Generated "
             "from the docstrings by `scripts/api_doc.py`; a test keeps it in step with the code.", "",
             "| name | kind | defined in | what it is |", "| --- | --- | --- | --- |"]
    for name in edgeopt.__all__:
        if name == "__version__":
            continue
        obj = getattr(edgeopt, name)
        kind = "class" if inspect.isclass(obj) else "function"
        text = first_paragraph(obj).replace("|", "\\|")
        lines.append(f"| `{name}` | {kind} | `{edgeopt._PUBLIC[name]}` | {text} |")
    lines += ["", "`edgeopt.__version__` is the installed distribution's version, part of every measurement's "
              "reuse key.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
