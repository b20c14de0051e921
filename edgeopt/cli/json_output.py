"""``--json``: what a command prints as a table, as one JSON document a script can consume.

Every document printed has ``schema_version`` (the version of that document kind's layout; this module's
:data:`JSON_SCHEMA_VERSION` unless the library's own document carries one) and ``kind`` (``inspect``,
``profiles``, ``comparison``, ...).  It is written with edgeopt's one JSON encoder
(``edgeopt.core.fileio.dumps_json``: non-finite numbers as ``"NaN"``/``"Infinity"``), alone on stdout; the
human lines a command also prints go to stderr or are left out under ``--json``.

Imported by every ``edgeopt`` call: the standard library only at module level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["JSON_SCHEMA_VERSION", "add_json_option", "json_document", "print_json"]

#: ``schema_version`` of the documents the CLI assembles itself.
JSON_SCHEMA_VERSION = 1


def add_json_option(parser: Any, what: str) -> None:
    """``--json``: print ``what`` as one JSON document instead of the table."""
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document with schema_version and kind, instead of the "
                             "table (default: the table)")


def json_document(kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with ``schema_version`` and ``kind`` first; a ``schema_version`` or ``kind`` already in it
    (a library document's own) is kept."""
    return {"schema_version": JSON_SCHEMA_VERSION, "kind": kind, **document}


def print_json(kind: str, document: Mapping[str, Any]) -> None:
    """Print :func:`json_document` of ``document`` on stdout."""
    from edgeopt.core.fileio import dumps_json

    print(dumps_json(json_document(kind, document), sort_keys=False))
