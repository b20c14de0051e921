"""Output any terminal can show: characters the stream's encoding lacks become ASCII, never a crash.

Tables, verdicts and help use a few non-ASCII characters (→ ± ≤ ≥ Δ × µ …).  On a stream whose encoding
cannot hold them (``PYTHONIOENCODING=ascii``, a cp1252 console, ``LANG=C`` on an old Python), writing one
would raise ``UnicodeEncodeError``.  :func:`install` registers the codec error handler ``edgeopt-ascii`` and
switches ``sys.stdout`` and ``sys.stderr`` to it where they use the default ``strict`` handler: each character
the encoding cannot hold is written as its ASCII equivalent (:data:`ASCII_EQUIVALENTS`, else its Unicode
decomposition without accents, else ``?``).  Characters the encoding can hold are written unchanged, so a UTF-8
terminal sees exactly what it saw before.
"""

from __future__ import annotations

import codecs
import io
import sys
import unicodedata

__all__ = ["ASCII_EQUIVALENTS", "ERROR_HANDLER", "install", "transliterate"]

ERROR_HANDLER = "edgeopt-ascii"

#: ASCII spellings of the characters edgeopt writes (and a few common neighbours).
ASCII_EQUIVALENTS: dict[str, str] = {
    "→": "->", "←": "<-", "↔": "<->", "⇒": "=>",
    "±": "+/-", "≤": "<=", "≥": ">=", "≠": "!=", "≈": "~", "∞": "inf", "−": "-",
    "Δ": "d", "δ": "d", "×": "x", "·": ".", "÷": "/", "µ": "u", "μ": "u", "σ": "sigma", "°": " deg",
    "…": "...", "–": "-", "—": "--", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "*", "✓": "ok", "✗": "x",
    "\u00a0": " ", "\u202f": " ", "\u2009": " ",
}  # fmt: skip


def transliterate(text: str) -> str:
    """``text`` in ASCII: :data:`ASCII_EQUIVALENTS`, else the character's decomposition stripped of accents
    (``é`` → ``e``), else ``?``."""
    out = []
    for char in text:
        if char.isascii():
            out.append(char)
            continue
        known = ASCII_EQUIVALENTS.get(char)
        if known is None:
            known = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii") or "?"
        out.append(known)
    return "".join(out)


def _handler(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return transliterate(error.object[error.start:error.end]), error.end


def install() -> None:
    """Register ``edgeopt-ascii`` and put ``sys.stdout``/``sys.stderr`` on it where they are strict text streams
    (a stream the user gave another handler, e.g. ``PYTHONIOENCODING=ascii:replace``, is left as it is)."""
    try:
        codecs.lookup_error(ERROR_HANDLER)
    except LookupError:
        codecs.register_error(ERROR_HANDLER, _handler)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors=ERROR_HANDLER)
