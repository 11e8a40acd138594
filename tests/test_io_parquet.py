"""transforms/io_parquet.py: Parquet image tables (HF struct or binary column) read row by row,
other columns carried through, written back with the source schema and row order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.unit_data import jpeg_bytes
from transforms.io_parquet import (
    image_column_kind,
    plan_parquet_shards,
    read_parquet_shard,
    read_row_image,
    write_parquet_shard,
)
from transforms.storage import DEFAULT_STORAGE

SCHEMA = pa.schema([("id", pa.int64()), ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))],
                   metadata={b"source": b"kept"})


def _table(path: Path, images: Sequence[bytes | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": i, "image": None if data is None else {"bytes": data, "path": f"{i}.jpg"}}
            for i, data in enumerate(images)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)


def test_image_column_kind_names_the_option() -> None:
    assert image_column_kind(SCHEMA, "image", "t.parquet") == "struct"
    assert image_column_kind(pa.schema([("img", pa.large_binary())]), "img", "t.parquet") == "binary"
    with pytest.raises(ValueError, match="image_column: no column 'pixels'"):
        image_column_kind(SCHEMA, "pixels", "t.parquet")
    with pytest.raises(ValueError, match="image_column: column 'id'"):
        image_column_kind(SCHEMA, "id", "t.parquet")


def test_plan_one_shard_per_file_checked_before_work(tmp_path: Path) -> None:
    _table(tmp_path / "in" / "a" / "part-0.parquet", [jpeg_bytes(1)])
    _table(tmp_path / "in" / "b" / "part-0.parquet", [jpeg_bytes(2)])
    shards = plan_parquet_shards(str(tmp_path / "in"), "image")
    assert [s.shard_id for s in shards] == ["a__part-0", "b__part-0"]
    assert shards[0].relative_paths == ("a/part-0.parquet",) and shards[0].image_column == "image"
    with pytest.raises(ValueError, match="image_column"):
        plan_parquet_shards(str(tmp_path / "in"), "pixels")
    with pytest.raises(FileNotFoundError):
        plan_parquet_shards(str(tmp_path / "none"), "image")


def test_read_rows_with_extras_and_quarantine_missing_images(tmp_path: Path) -> None:
    images = [jpeg_bytes(10), None, jpeg_bytes(30)]
    _table(tmp_path / "in" / "t.parquet", images)
    [spec] = plan_parquet_shards(str(tmp_path / "in" / "t.parquet"), "image")
    records = list(read_parquet_shard(spec))
    assert [r.index for r in records] == [0, 1, 2]
    assert records[0].data == images[0] and dict(records[0].extras) == {"id": 0, "image.path": "0.jpg"}
    assert records[0].source_uri == f"{spec.input_uris[0]}#row=0"
    assert records[1].is_quarantined and records[1].reason == "read:missing_image"


def test_write_keeps_schema_order_and_columns_and_drops_withheld(tmp_path: Path) -> None:
    images = [jpeg_bytes(10), jpeg_bytes(20), jpeg_bytes(30)]
    _table(tmp_path / "in" / "t.parquet", images)
    [spec] = plan_parquet_shards(str(tmp_path / "in" / "t.parquet"), "image")
    records = list(read_parquet_shard(spec))
    records[1] = records[1].quarantine("verify:residual_faces")
    out = tmp_path / "out"
    written = write_parquet_shard(spec, records, str(out), DEFAULT_STORAGE, lambda r: b"new" + bytes([r.index]))
    final = out / "data" / "t.parquet"
    assert written == {records[0].record_id: f"{final}#row=0", records[2].record_id: f"{final}#row=1"}
    table = pq.read_table(final)
    assert table.schema.equals(SCHEMA, check_metadata=True)
    assert table.to_pylist() == [{"id": 0, "image": {"bytes": b"new\x00", "path": "0.jpg"}},
                                 {"id": 2, "image": {"bytes": b"new\x02", "path": "2.jpg"}}]
    assert read_row_image(str(final), 1) == b"new\x02"
    assert read_row_image(str(final), 5) is None
