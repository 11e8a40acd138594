"""Shard planning and reading, dispatched on the input format."""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.options import AnonymizeOptions
from transforms.io_images import plan_image_shards, read_image_shard
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
    raise ValueError(f"input_format: {fmt!r} is not supported yet")


def read_shard(spec: ShardSpec, s3_endpoint: str = "") -> Iterator[Record]:
    """Yield the records of one shard, in order."""
    if spec.format == "images":
        yield from read_image_shard(spec, s3_endpoint)
        return
    raise ValueError(f"unknown shard format {spec.format!r}")
