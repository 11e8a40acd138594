"""transforms/shards.py: the input format is told from the URI, and planning and reading are
dispatched to the reader of that format."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.datasets import write_tar_shards
from tests.unit_data import jpeg_bytes
from transforms.shards import detect_format, plan_shards, read_shard


def test_detect_format() -> None:
    assert detect_format("s3://b/shard-{000000..000009}.tar") == "webdataset"
    assert detect_format("/data/shard-000001.TAR") == "webdataset"
    assert detect_format("/data/train.parquet") == "parquet"
    assert detect_format("/data/images/") == "images"
    assert detect_format("/data/*.jpg") == "images"


def test_plan_and_read_each_format(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "images" / name).write_bytes(jpeg_bytes(90))
    images = plan_shards(str(tmp_path / "images"), shard_size=2)
    assert [(s.format, len(s.input_uris)) for s in images] == [("images", 2), ("images", 1)]
    assert [r.relative_path for r in read_shard(images[0])] == ["a.jpg", "b.jpg"]

    write_tar_shards(tmp_path / "tars", shards=2, per_shard=2, size=(160, 160))
    tars = plan_shards(str(tmp_path / "tars" / "shard-{000000..000001}.tar"))
    assert [s.format for s in tars] == ["webdataset", "webdataset"]
    assert len(list(read_shard(tars[1]))) == 2

    table = pa.table({"picture": [jpeg_bytes(5), jpeg_bytes(6)], "label": [1, 2]})
    pq.write_table(table, tmp_path / "t.parquet")
    [parquet] = plan_shards(str(tmp_path / "t.parquet"), image_column="picture")
    assert parquet.format == "parquet" and parquet.image_column == "picture"
    assert [dict(r.extras)["label"] for r in read_shard(parquet)] == [1, 2]
    # A named format wins over the URI: the Parquet file read as an image folder holds no image.
    with pytest.raises(FileNotFoundError, match="no image files"):
        plan_shards(str(tmp_path / "t.parquet"), "images")
