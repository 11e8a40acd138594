"""Stage verified outputs before the shard commit, so only small records are grouped by shard.

Each verified record's bytes go to ``<output>/_staging/<run_id>/<shard_id>/<index>`` and the
record travels on without them; the commit reads them back in order, writes the final shard and
removes the staging folder. Memory therefore does not grow with shard or dataset size, and the
pattern works on distributed runners (the staging prefix is shared storage). Nothing under
``_staging`` is ever a published output.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from transforms.observability import timed
from transforms.records import Record
from transforms.storage import DEFAULT_STORAGE, PARTIAL_PREFIX, Storage, is_local, join, write_atomic

STAGING_FOLDER = "_staging"
# The folders under the output that this product creates and writes (see README, Outputs).
PRODUCT_FOLDERS = ("data", "manifest", "report", "audit")


def staging_path(root: str, run_id: str, shard_id: str, index: int) -> str:
    return join(root, STAGING_FOLDER, run_id, shard_id, f"{index:09d}")


class StageOutput(beam.DoFn):
    """Write each verified record's anonymized bytes to staging; pass the record on without them."""

    def __init__(self, output: str, run_id: str, storage: Storage = DEFAULT_STORAGE) -> None:
        if not output or not run_id:
            raise ValueError("output and run_id are required")
        self._output = output
        self._run_id = run_id
        self._storage = storage

    def process(self, record: Record) -> Iterator[Record]:
        if record.is_quarantined:
            yield record
            return
        with timed("stage"):
            fs, root = self._storage.filesystem(self._output)
            path = staging_path(root, self._run_id, record.shard_id, record.index)
            write_atomic(fs, path, record.data)
        yield record.replace(data=b"", staged_path=path)


def read_staged(record: Record, storage: Storage, output: str) -> bytes:
    """The anonymized bytes of a staged record."""
    fs, _ = storage.filesystem(output)
    return bytes(fs.cat_file(record.staged_path))


def remove_staging(output: str, storage: Storage = DEFAULT_STORAGE, run_id: str | None = None,
                   shard_id: str | None = None) -> None:
    """Remove staged files: one shard's or one run's (``run_id``), or (``run_id`` None) what killed
    earlier runs left: all of ``_staging/`` and the half-written files of atomic writes
    (``storage.PARTIAL_PREFIX``) in the folders this product writes. Nothing else is touched; call
    it without ``run_id`` only while holding the output's lease (no other run is live)."""
    fs, root = storage.filesystem(output)
    parts = [root, STAGING_FOLDER] + ([run_id] if run_id else []) + ([shard_id] if shard_id else [])
    path = join(*parts)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    folder = join(root, STAGING_FOLDER)
    if run_id and not shard_id and is_local(fs) and fs.exists(folder) and not fs.ls(folder):
        fs.rmdir(folder)  # no other run's staging in it
    if run_id is None and is_local(fs):
        for folder in PRODUCT_FOLDERS:
            if fs.exists(join(root, folder)):
                for leftover in fs.glob(join(root, folder, "**", f"{PARTIAL_PREFIX}*")):
                    fs.rm_file(leftover)
