"""A per-machine cache of model files derived from installed ones (offline: nothing is downloaded).

A detector whose shipped model must be rewritten before it runs well (CenterFace: its weights listed
as graph inputs) would rewrite it in every worker process, importing the ``onnx`` package to do it
(about 1.5 s of each worker's start-up). The rewritten bytes are kept here instead, under a name
made of the source's SHA-256 and the rewrite's version, beside the SHA-256 of the bytes themselves:
a file that does not match it (cut short, edited) is made again. Writes are atomic (``storage.write_atomic``),
so processes that make the same entry at once leave one whole file.
Where the cache cannot be written (a read-only home), the bytes are made and used all the same.

The folder: ``DATASET_ANONYMIZER_CACHE``, else ``$XDG_CACHE_HOME/dataset-anonymizer``, else
``~/.cache/dataset-anonymizer``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import fsspec

from transforms.storage import write_atomic

LOG = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The cache's folder (see the module's docstring); not created here."""
    explicit = os.environ.get("DATASET_ANONYMIZER_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dataset-anonymizer"


def derived_model(name: str, source: Path, version: str, make: Callable[[], bytes]) -> bytes:
    """The bytes ``make()`` derives from the model file ``source``, from the cache when an entry of
    this source (by content) and ``version`` is there and whole; else made, stored and returned."""
    key = hashlib.sha256(source.read_bytes()).hexdigest()[:32]
    entry = cache_dir() / f"{name}-{key}-{version}.onnx"
    digest_file = entry.with_name(entry.name + ".sha256")
    try:
        data = entry.read_bytes()
        if hashlib.sha256(data).hexdigest() == digest_file.read_text().strip():
            return data
    except OSError:
        pass
    data = make()
    try:
        local = fsspec.filesystem("file")
        write_atomic(local, str(entry), data)  # its folder made; readers see no entry or all of it
        write_atomic(local, str(digest_file), hashlib.sha256(data).hexdigest().encode())
    except OSError as error:
        LOG.info("model cache %s not written (%s): the model is rewritten in each process", entry, error)
    return data
