"""The file edgeopt makes variants of when the user's graph needed a repair: a sorted copy in edgeopt's own folder.

ONNX Runtime runs a graph whose nodes are out of topological order; ``onnx.checker``, ONNX Runtime's quantizers
and edgeopt's check of every variant do not take it.  :func:`edgeopt.models.graph.open_model` sorts such a graph
in memory; :func:`sorted_source` writes that sorted graph to ``<folder>/<stem>-<digest>/<name>.onnx``, with a
plain copy of each external data file at the location the graph names (its references stay valid byte for
byte; hard links and symlinks are refused by ``load_model``, so they are not used), and says what was repaired,
for the variant's provenance.  The user's file is never written.  The copy is made once per content of the model
and its data files (the digest) and reused after.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeopt.core.fileio import sha256_file, sha256_json
from edgeopt.models.graph import open_model


@dataclass(frozen=True)
class SortedSource:
    """The file to make variants of (``source`` itself, or its sorted copy) and the repairs behind it."""

    path: Path
    repairs: tuple[str, ...] = ()


def sorted_source(source: Path | str, folder: Path | str) -> SortedSource:
    """``source`` itself when ``onnx.checker`` takes it as it is; else a sorted copy under ``folder`` (made, or
    reused when the model and its data files are unchanged) with the repairs made.  ``source`` is checked as
    ``load_model`` checks it (a refusal raises ``ModelFileError``)."""
    source, folder = Path(source), Path(folder)
    opened = open_model(source, load_external_data=False)
    if not opened.repairs:
        return SortedSource(source)
    real = source.resolve()  # external data sits beside the resolved file (load_model)
    data = {location: sha256_file(real.parent / location) for location in opened.external_files}
    digest = sha256_json({"model": sha256_file(real), "data": data})
    home = folder / f"{real.stem}-{digest[:16]}"
    target = home / real.name
    if target.is_file():
        return SortedSource(target, opened.repairs)
    if home.exists():  # a folder without its model: not made here (the copy is renamed into place whole)
        shutil.rmtree(home)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sorting-", dir=folder))
    try:
        for location in opened.external_files:
            (staging / location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real.parent / location, staging / location)
        (staging / real.name).write_bytes(opened.model.SerializeToString())
        try:
            staging.rename(home)
        except OSError:  # another process made it meanwhile
            if not target.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SortedSource(target, opened.repairs)
