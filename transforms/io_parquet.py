"""Parquet image tables in and out: an image column that is either a Hugging Face datasets
``struct<bytes, path>`` or plain binary; every other column carried through unchanged, same
file names, same row order, the source schema (and its metadata) kept.

Rows are streamed in small batches on both sides, so a shard never sits whole in memory.
"""

from __future__ import annotations

import hashlib
import posixpath
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.io_images import record_id_for
from transforms.records import Record, ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, path_kind, to_uri, write_atomic_from_file

READ_BATCH_ROWS = 16
WRITE_BATCH_ROWS = 64


def image_column_kind(schema: pa.Schema, column: str, uri: str) -> str:
    """``struct`` or ``binary``.

    Raises:
        ValueError: naming ``image_column`` when the column is missing or of another type.
    """
    if column not in schema.names:
        raise ValueError(f"image_column: no column {column!r} in {uri} (columns: {', '.join(schema.names)})")
    kind = schema.field(column).type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") != -1:
        return "struct"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    raise ValueError(f"image_column: column {column!r} in {uri} is {kind}, expected binary or struct<bytes, path>")


def read_row_image(parquet_uri: str, row: int, storage: Storage = DEFAULT_STORAGE) -> bytes | None:
    """The image bytes of one row of an output table (the first image-typed column), or None."""
    fs, path = storage.filesystem(parquet_uri)
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        schema = parquet.schema_arrow
        columns = []
        for name in schema.names:
            try:
                columns.append((name, image_column_kind(schema, name, parquet_uri)))
            except ValueError:
                continue
        if not columns:
            return None
        column, kind = columns[0]
        start = 0
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if start <= row < start + rows:
                value = parquet.read_row_group(group, columns=[column]).column(column)[row - start].as_py()
                data = value.get("bytes") if kind == "struct" and value else value
                return bytes(data) if data else None
            start += rows
    return None


def _read_schema(uri: str, storage: Storage) -> pa.Schema:
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as handle:
        return pq.read_schema(handle)


def plan_parquet_shards(input_uri: str, image_column: str, storage: Storage = DEFAULT_STORAGE) -> list[ShardSpec]:
    """One shard per Parquet file; every file's schema is checked before any work.

    Raises:
        FileNotFoundError: nothing matches.
        ValueError: a file lacks the image column.
    """
    fs, path = storage.filesystem(input_uri)
    kind = "glob" if any(c in path for c in "*?[") else path_kind(fs, path, input_uri)
    if kind == "glob":
        paths = sorted(fs.glob(path))
    elif kind == "directory":
        paths = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    elif kind == "file":
        paths = [path]
    else:
        raise FileNotFoundError(f"input: nothing found at {input_uri}")
    if not paths:
        raise FileNotFoundError(f"input: no Parquet files at {input_uri}")
    root = posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(
        [posixpath.dirname(p) for p in paths])
    shards = []
    for p in paths:
        uri = to_uri(fs, p)
        image_column_kind(_read_schema(uri, storage), image_column, uri)
        rel = posixpath.relpath(p, root)
        shards.append(ShardSpec(
            shard_id=rel.removesuffix(".parquet").replace("/", "__"), format="parquet",
            input_uris=(uri,), relative_paths=(rel,), output_name="data", image_column=image_column))
    return shards


def read_parquet_shard(spec: ShardSpec, storage: Storage = DEFAULT_STORAGE) -> Iterator[Record]:
    """Yield one record per row; the image's other struct fields and other columns go to extras."""
    uri = spec.input_uris[0]
    column = spec.image_column
    fs, path = storage.filesystem(uri)
    index = 0
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        kind = image_column_kind(parquet.schema_arrow, column, uri)
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS):
            for row in batch.to_pylist():
                source = f"{uri}#row={index}"
                value = row.pop(column)
                extras: list[tuple[str, Any]] = list(row.items())
                data = value.get("bytes") if kind == "struct" and value is not None else value
                if kind == "struct" and value is not None:
                    extras += [(f"{column}.{k}", v) for k, v in value.items() if k != "bytes"]
                record = Record(spec.shard_id, index, record_id_for(source), source, f"row-{index}",
                                "", b"", extras=tuple(extras))
                if not data:
                    yield record.quarantine("read:missing_image")
                else:
                    yield record.replace(data=bytes(data), source_sha256=hashlib.sha256(data).hexdigest())
                index += 1


def _output_row(record: Record, data: bytes, column: str, kind: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    struct: dict[str, Any] = {"bytes": data}
    for name, value in record.extras:
        if name.startswith(column + "."):
            struct[name[len(column) + 1:]] = value
        else:
            row[name] = value
    row[column] = struct if kind == "struct" else data
    return row


def write_parquet_shard(spec: ShardSpec, records: Sequence[Record], output: str, storage: Storage,
                        load: Callable[[Record], bytes]) -> dict[str, str]:
    """Write the published rows, in input order and with the source schema, atomically."""
    schema = _read_schema(spec.input_uris[0], storage)
    kind = image_column_kind(schema, spec.image_column, spec.input_uris[0])
    fs, root = storage.filesystem(output)
    final = join(root, spec.output_name, spec.relative_paths[0])
    written: dict[str, str] = {}
    with tempfile.NamedTemporaryFile(suffix=".parquet") as local:
        with pq.ParquetWriter(local.name, schema) as writer:
            batch: list[dict[str, Any]] = []
            for record in records:
                if record.is_withheld:
                    continue
                written[record.record_id] = f"{to_uri(fs, final)}#row={len(written)}"
                batch.append(_output_row(record, load(record), spec.image_column, kind))
                if len(batch) >= WRITE_BATCH_ROWS:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        write_atomic_from_file(fs, final, local.name)
    return written
