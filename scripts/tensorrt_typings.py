"""Make the installed ``tensorrt-stubs`` usable by mypy: ``python scripts/tensorrt_typings.py OUT_DIR``.

``tensorrt-stubs`` (10.8 to 10.13) ships ``tensorrt/__init__.pyi`` without a ``py.typed`` marker
(so mypy skips it as an untyped package) and a ``tensorrt_bindings/tensorrt.pyi`` that is not valid
Python in five plugin signatures (a parameter named ``in``; a parameter without a default after
defaulted ones).  This copies both packages into ``OUT_DIR`` (put it on ``MYPYPATH``), renames those
parameters, gives the late parameter a ``...`` default, and marks the copies ``ignore-errors`` so that
mypy checks *our* calls against them without judging the stubs' own style.  Every repaired line is
printed; a stub that still does not parse is an error.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import sys
from pathlib import Path

_IN_PARAM = re.compile(r"([(,]\s*)in(\s*:)")


def _repair_line(line: str) -> str:
    line = _IN_PARAM.sub(r"\1in_\2", line)
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if match:  # after the first defaulted parameter every parameter needs a default
        params, seen_default = [], False
        for param in [p.strip() for p in match.group(2).split(",")]:
            if "=" in param:
                seen_default = True
            elif seen_default and not param.startswith("*"):
                param = f"{param} = ..."
            params.append(param)
        line = match.group(1) + ", ".join(params) + match.group(3)
    return line


def repair(text: str, name: str) -> str:
    lines = text.splitlines()
    for _ in range(100):
        try:
            ast.parse("\n".join(lines), filename=name)
            return "# mypy: ignore-errors\n" + "\n".join(lines) + "\n"
        except SyntaxError as error:
            index = (error.lineno or 1) - 1
            fixed = _repair_line(lines[index])
            if fixed == lines[index]:
                raise SystemExit(f"{name}:{index + 1}: cannot repair: {error.msg}: {lines[index].strip()}") from error
            print(f"{name}:{index + 1}: repaired", file=sys.stderr)
            lines[index] = fixed
    raise SystemExit(f"{name}: too many syntax errors")


def main(out: Path) -> None:
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    site = Path(next(iter(spec.submodule_search_locations))).parent
    shutil.rmtree(out, ignore_errors=True)
    for package in ("tensorrt", "tensorrt_bindings"):
        for stub in sorted((site / package).glob("*.pyi")):
            target = out / package / stub.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(repair(stub.read_text(encoding="utf-8"), f"{package}/{stub.name}"), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
