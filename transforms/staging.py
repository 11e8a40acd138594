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

from transforms.records import Record
from transforms.storage import filesystem, is_local, join, write_atomic

STAGING_FOLDER = "_staging"


def staging_path(root: str, run_id: str, shard_id: str, index: int) -> str:
    return join(root, STAGING_FOLDER, run_id, shard_id, f"{index:09d}")


class StageOutput(beam.DoFn):
    """Write each verified record's anonymized bytes to staging; pass the record on without them."""

    def __init__(self, output: str, run_id: str, s3_endpoint: str = "") -> None:
        if not output or not run_id:
            raise ValueError("output and run_id are required")
        self._output = output
        self._run_id = run_id
        self._endpoint = s3_endpoint

    def process(self, record: Record) -> Iterator[Record]:
        if record.is_quarantined:
            yield record
            return
        fs, root = filesystem(self._output, self._endpoint)
        path = staging_path(root, self._run_id, record.shard_id, record.index)
        write_atomic(fs, path, record.data)
        yield record.replace(data=b"", staged_path=path)


def read_staged(record: Record, s3_endpoint: str, output: str) -> bytes:
    """The anonymized bytes of a staged record."""
    fs, _ = filesystem(output, s3_endpoint)
    return bytes(fs.cat_file(record.staged_path))


def remove_staging(output: str, s3_endpoint: str = "", run_id: str | None = None,
                   shard_id: str | None = None) -> None:
    """Remove staged files: one shard's, one run's, or all (at the start of a run)."""
    fs, root = filesystem(output, s3_endpoint)
    parts = [root, STAGING_FOLDER] + ([run_id] if run_id else []) + ([shard_id] if shard_id else [])
    path = join(*parts)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    if run_id is None and is_local(fs) and fs.exists(root):
        # Half-written files of an interrupted atomic write (transforms/storage.py) are hidden
        # dot-files next to their target; remove them too.
        for leftover in fs.glob(join(root, "**", ".staging-*")):
            fs.rm_file(leftover)
