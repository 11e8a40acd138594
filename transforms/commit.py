"""Commit a shard exactly once: check nothing was lost, write its outputs, then its manifest.

The manifest is written last and atomically, so a shard is committed if and only if its
manifest exists; a re-run skips committed shards and redoes the others with the same names.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from PIL import Image

from transforms.failpoints import failpoint
from transforms.io_images import write_image_shard
from transforms.io_parquet import write_parquet_shard
from transforms.io_webdataset import write_tar_shard
from transforms.lease import check_held
from transforms.manifest import RunInfo, manifest_path, manifest_row, read_shard_rows, shard_plan, write_manifest
from transforms.observability import meter_commit, timed
from transforms.records import Record, ShardSpec
from transforms.reidentification import with_reidentification
from transforms.staging import read_staged, remove_staging
from transforms.storage import DEFAULT_STORAGE, Storage, join, remove_if_exists
from transforms.thumbnails import remove_shard_thumbnails, thumbnail_allowed, write_thumbnail

# (spec, records in order, output, storage, load anonymized bytes) -> record_id: output URI
ShardWriter = Callable[[ShardSpec, Sequence[Record], str, Storage, Callable[[Record], bytes]], dict[str, str]]
WRITERS: dict[str, ShardWriter] = {
    "images": write_image_shard, "webdataset": write_tar_shard, "parquet": write_parquet_shard,
}


@dataclass(frozen=True)
class GateVerdict:
    """A shard gate's decision: ``failed`` names the failed checks (empty when it passed)."""

    failed: tuple[str, ...] = ()


# A gate sees the shard's provisional manifest rows (status ``published`` for verified
# records) before anything is written, and may refuse the whole shard. Published rows also carry
# ``output_decodes``, ``output_width`` and ``output_height`` (see ``output_facts``).
ShardGate = Callable[[ShardSpec, Sequence[Mapping[str, Any]]], GateVerdict]


@dataclass(frozen=True)
class ShardResult:
    """What committing one shard did, for the run summary."""

    shard_id: str
    inputs: int
    published: int
    quarantined: int


def output_facts(data: bytes) -> dict[str, Any]:
    """Gate-only facts of an anonymized output: whether it decodes, and its size."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return {"output_decodes": True, "output_width": image.width, "output_height": image.height}
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return {"output_decodes": False, "output_width": None, "output_height": None}


class LostRecordsError(RuntimeError):
    """The records that reached the commit are not the records that were read."""


def check_complete(shard_id: str, records: Sequence[Record], read_count: int) -> None:
    """Raise ``LostRecordsError`` unless each record read arrived exactly once."""
    indices = [record.index for record in records]
    if len(indices) != read_count or len(set(indices)) != read_count:
        raise LostRecordsError(
            f"shard {shard_id}: {read_count} records read but {len(indices)} arrived "
            f"({len(set(indices))} distinct); refusing to commit")


class CommitShard(beam.DoFn):
    """Write one shard's published records and then its manifest (the commit marker).

    Input: ``(shard_id, {"records": [Record...], "read_count": [n]})`` from a CoGroupByKey.
    Output: a ``ShardResult``.
    """

    def __init__(self, specs: Mapping[str, ShardSpec], output: str, run: RunInfo,
                 storage: Storage = DEFAULT_STORAGE, gate: ShardGate | None = None) -> None:
        self._specs = dict(specs)
        self._output = output
        self._run = run
        self._storage = storage
        self._gate = gate

    def _load(self, record: Record) -> bytes:
        return read_staged(record, self._storage, self._output)

    def process(self, element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[ShardResult]:
        shard_id, grouped = element
        records = sorted(grouped["records"], key=lambda r: r.index)
        read_counts = list(grouped["read_count"])
        check_complete(shard_id, records, sum(read_counts))
        check_held(self._output, self._run.run_id, self._storage)  # no commit beside another run
        records = with_reidentification(records)  # the shard's rank-1 test; identity vectors dropped
        spec = self._specs[shard_id]
        now = datetime.datetime.now(datetime.UTC)
        fs, root = self._storage.filesystem(self._output)
        remove_shard_thumbnails(fs, root, shard_id)  # what an earlier attempt at this shard kept
        if self._gate is not None:
            with timed("gate", len(records)):
                provisional = [manifest_row(r, None if held else "", self._run, now)
                               | ({} if held else output_facts(self._load(r)))
                               for r, held in ((r, r.is_withheld) for r in records)]
                verdict = self._gate(spec, provisional)
            if verdict.failed:
                reason = "gate:" + ",".join(verdict.failed)
                # Withheld by the gate only, for a failure that says nothing against their own outputs
                # (verified): the report keeps a thumbnail of each anonymized output before its bytes
                # go; never of a record withheld earlier, nor of any record of a shard failed on privacy.
                for r in records:
                    if not r.is_withheld and thumbnail_allowed(verdict.failed):
                        write_thumbnail(fs, root, shard_id, r.index, self._load(r))
                records = [r if r.is_withheld else r.quarantine(reason) for r in records]
        # Every record reaches the writer: withheld ones (quarantined, excluded) carry no bytes and
        # are never written, and whatever an earlier, crashed attempt left for them is removed, so
        # that after the commit data/ holds exactly the shard's published records.
        with timed("commit", len(records)):
            written = WRITERS[spec.format](spec, records, self._output, self._storage, self._load)
        rows = [manifest_row(r, written.get(r.record_id), self._run, now) for r in records]
        failpoint("before_manifest")
        write_manifest(rows, self._output, shard_id, self._storage, shard_plan(spec))
        meter_commit(rows)
        failpoint("after_commit")
        remove_staging(self._output, self._storage, self._run.run_id, shard_id)
        published = sum(1 for row in rows if row["status"] == "published")
        yield ShardResult(shard_id, len(rows), published, len(rows) - published)


def planned_outputs(output: str, shards: Iterable[ShardSpec], storage: Storage = DEFAULT_STORAGE) -> set[str]:
    """The output paths the planned shards write: each image file, or each shard's one file."""
    _, root = storage.filesystem(output)
    return {join(root, spec.output_name, rel) for spec in shards
            for rel in (spec.relative_paths if spec.format == "images" else spec.relative_paths[:1])}


def withdraw_shard(output: str, shard_id: str, keep: set[str], storage: Storage = DEFAULT_STORAGE) -> int:
    """Undo the commit of a shard that the input no longer matches (resume over a changed input).

    Its outputs that no planned shard writes (``keep``: ``planned_outputs``) are removed, the
    others are rewritten or removed by the commit of the shard that now holds their record; the
    manifest goes last, so a crash part-way leaves it for the next run to withdraw again.

    Returns:
        How many output files were removed.
    """
    fs, root = storage.filesystem(output)
    paths: set[str] = set()
    for row in read_shard_rows(output, shard_id, storage):
        if row.get("output_uri"):
            paths.add(storage.filesystem(str(row["output_uri"]).split("#", 1)[0])[1])
        if row.get("relative_path") and "#" not in str(row.get("source_uri") or ""):
            paths.add(join(root, "data", str(row["relative_path"])))  # image folders: withheld rows too
    removed = sum(remove_if_exists(fs, path) for path in sorted(paths - keep))
    for suffix in (".json", ".html"):
        remove_if_exists(fs, join(root, "report", "validations", f"{shard_id}{suffix}"))
    remove_shard_thumbnails(fs, root, shard_id)
    remove_if_exists(fs, manifest_path(root, shard_id))
    return removed
