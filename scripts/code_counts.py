"""The shape of the package in numbers: modules, import edges between subpackages, upward imports,
cycles, functions longer than 80 lines and files longer than 400 lines.

Read from the source with the layer test's own import reader (``tests/test_layers.py``), so the two never
disagree.  Usage: ``python scripts/code_counts.py [--list]`` from the repository root.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_layers import LAYERS, PACKAGE, cycles, edgeopt_imports, layer_of, modules  # noqa: E402

LONG_FUNCTION = 80
LONG_FILE = 400


def counts() -> tuple[dict[str, int], dict[str, list[str]]]:
    table = modules()
    graph: dict[str, set[str]] = {name: set() for name in table}
    edges: set[tuple[str, str]] = set()
    upward: list[str] = []
    for name, path in table.items():
        for imported, _line, _ in edgeopt_imports(path):
            if imported == "edgeopt":
                continue
            target = imported if imported in table else imported.rsplit(".", 1)[0]
            if target not in table:
                continue
            graph[name].add(target)
            if layer_of(target) != layer_of(name):
                edges.add((layer_of(name), layer_of(target)))
            if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(name)):
                upward.append(f"{name} -> {target}")
    long_functions: list[str] = []
    long_files: list[str] = []
    for name, path in table.items():
        text = path.read_text()
        if len(text.splitlines()) > LONG_FILE:
            long_files.append(f"{name} ({len(text.splitlines())})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LONG_FUNCTION:
                    long_functions.append(f"{name}.{node.name} ({length})")
    found_cycles = cycles(graph)
    numbers = {"modules": len(table), "subpackage import edges": len(edges), "upward imports": len(upward),
               "cycles": len(found_cycles), f"functions > {LONG_FUNCTION} lines": len(long_functions),
               f"files > {LONG_FILE} lines": len(long_files),
               "lines": sum(len(p.read_text().splitlines()) for p in table.values())}
    lists = {"upward": upward, "cycles": [" -> ".join(c) for c in found_cycles],
             "long functions": long_functions, "long files": long_files}
    return numbers, lists


def main() -> None:
    numbers, lists = counts()
    for key, value in numbers.items():
        print(f"{key}: {value}")
    if "--list" in sys.argv:
        for key, items in lists.items():
            print(f"\n{key}:")
            for item in items:
                print(f"  {item}")
    assert PACKAGE.is_dir()


if __name__ == "__main__":
    main()
