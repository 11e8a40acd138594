"""Small records and images for the unit tests of the I/O and commit modules (no pipeline)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from PIL import Image

from transforms.commit import CommitShard, ShardGate, ShardResult
from transforms.io_images import record_id_for
from transforms.lease import OutputLease
from transforms.manifest import RunInfo
from transforms.records import Record, ShardSpec
from transforms.staging import StageOutput
from transforms.storage import DEFAULT_STORAGE, Storage


def jpeg_bytes(shade: int, size: tuple[int, int] = (24, 16)) -> bytes:
    """A small solid JPEG of grey ``shade``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, shade, shade)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def record(shard_id: str, index: int, relative_path: str, data: bytes, source_uri: str = "") -> Record:
    """A read record of ``data``, as a reader makes it."""
    uri = source_uri or f"/in/{relative_path}"
    return Record(shard_id, index, record_id_for(uri), uri, relative_path, hashlib.sha256(data).hexdigest(), data)


def commit(output: str, spec: ShardSpec, records: Sequence[Record], run_id: str = "run-1",
           storage: Storage = DEFAULT_STORAGE, gate: ShardGate | None = None) -> list[ShardResult]:
    """Stage ``records`` and commit them as shard ``spec`` (the lease held by ``run_id``), as the
    pipeline's Stage and Commit steps do; returns the commit's results."""
    stage = StageOutput(output, run_id, storage)
    hashed = [r.replace(output_sha256=hashlib.sha256(r.data).hexdigest()) for r in records]
    staged = [out for r in hashed for out in stage.process(r)]
    run = RunInfo(run_id, "config-sha", {"name": "fixed"})
    with OutputLease(output, storage, run_id, 60):
        element: tuple[str, Mapping[str, Iterable[Any]]] = (
            spec.shard_id, {"records": staged, "read_count": [len(records)]})
        return list(CommitShard({spec.shard_id: spec}, output, run, storage, gate).process(element))
