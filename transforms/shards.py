"""Shard planning and reading, dispatched on the input format."""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.options import AnonymizeOptions
from transforms.io_images import plan_image_shards, read_image_shard
from transforms.io_parquet import plan_parquet_shards, read_parquet_shard
from transforms.io_webdataset import plan_tar_shards, read_tar_shard
from transforms.observability import timed
from transforms.records import Record, ShardSpec


def detect_format(input_uri: str) -> str:
    """The input layout implied by a URI: ``webdataset`` for .tar, ``parquet`` for .parquet."""
    lowered = input_uri.lower().rstrip("/")
    if lowered.endswith(".tar") or ".tar}" in lowered or lowered.endswith("}.tar"):
        return "webdataset"
    if lowered.endswith(".parquet"):
        return "parquet"
    return "images"


def plan_shards(options: AnonymizeOptions) -> list[ShardSpec]:
    """The shards of the input, in a deterministic order."""
    fmt = options.input_format if options.input_format != "auto" else detect_format(options.input)
    if fmt == "images":
        return plan_image_shards(options.input, options.shard_size, options.s3_endpoint)
    if fmt == "webdataset":
        return plan_tar_shards(options.input, options.s3_endpoint)
    return plan_parquet_shards(options.input, options.image_column, options.s3_endpoint)


def read_shard(spec: ShardSpec, s3_endpoint: str = "") -> Iterator[Record]:
    """Yield the records of one shard, in order (each record's reading timed as stage ``read``)."""
    readers = {"images": read_image_shard, "webdataset": read_tar_shard, "parquet": read_parquet_shard}
    records = readers[spec.format](spec, s3_endpoint)
    while True:
        with timed("read"):
            record = next(records, None)
        if record is None:
            return
        yield record
