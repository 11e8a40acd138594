"""Shard planning and reading, dispatched on the input format."""

from __future__ import annotations

from collections.abc import Iterator

from transforms.io_images import plan_image_shards, read_image_shard
from transforms.io_parquet import plan_parquet_shards, read_parquet_shard
from transforms.io_webdataset import plan_tar_shards, read_tar_shard
from transforms.observability import timed
from transforms.records import Record, ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage


def detect_format(input_uri: str) -> str:
    """The input layout implied by a URI: ``webdataset`` for .tar, ``parquet`` for .parquet."""
    lowered = input_uri.lower().rstrip("/")
    if lowered.endswith(".tar") or ".tar}" in lowered or lowered.endswith("}.tar"):
        return "webdataset"
    if lowered.endswith(".parquet"):
        return "parquet"
    return "images"


def plan_shards(input_uri: str, input_format: str = "auto", shard_size: int = 256, image_column: str = "image",
                storage: Storage = DEFAULT_STORAGE) -> list[ShardSpec]:
    """The shards of the input, in a deterministic order (``input_format`` ``auto``: from the URI)."""
    fmt = input_format if input_format != "auto" else detect_format(input_uri)
    if fmt == "images":
        return plan_image_shards(input_uri, shard_size, storage)
    if fmt == "webdataset":
        return plan_tar_shards(input_uri, storage)
    return plan_parquet_shards(input_uri, image_column, storage)


def read_shard(spec: ShardSpec, storage: Storage = DEFAULT_STORAGE) -> Iterator[Record]:
    """Yield the records of one shard, in order (each record's reading timed as stage ``read``)."""
    readers = {"images": read_image_shard, "webdataset": read_tar_shard, "parquet": read_parquet_shard}
    records = readers[spec.format](spec, storage)
    while True:
        with timed("read"):
            record = next(records, None)
        if record is None:
            return
        yield record
