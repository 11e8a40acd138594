"""transforms/erasure.py: erasing named records from committed shards removes their outputs and
marks their rows, keeps every other record as it was, is idempotent, and is verified."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.unit_data import commit, jpeg_bytes, record
from transforms.erasure import (
    KEPT_COLUMNS,
    ErasureError,
    ErasureRequest,
    erase_shard,
    erased_row,
    manifest_files,
    shard_format,
    verify_shard,
)
from transforms.io_parquet import plan_parquet_shards, read_parquet_shard
from transforms.manifest import read_shard_rows
from transforms.records import ShardSpec

SPEC = ShardSpec("images-000000", "images", ("/in/a.jpg", "/in/b.jpg"), ("a.jpg", "b.jpg"), "data")


def _images_shard(output: Path) -> None:
    commit(str(output), SPEC, [record(SPEC.shard_id, i, rel, jpeg_bytes(50 + i)) for i, rel in
                               enumerate(SPEC.relative_paths)])


def test_request_matches_sources_containers_and_subjects() -> None:
    with pytest.raises(ValueError, match="name at least one"):
        ErasureRequest()
    request = ErasureRequest(frozenset({"/in/t.tar"}), frozenset({"p-1"}))
    assert request.matches({"source_uri": "/in/t.tar#k"}) and request.matches({"source_uri": "x", "subject_id": "p-1"})
    assert not request.matches({"source_uri": "/in/u.tar#k", "subject_id": None})


def test_erased_row_keeps_lineage_only() -> None:
    row = {"record_id": "r", "source_uri": "/in/a.jpg", "output_uri": "/out/data/a.jpg", "output_sha256": "h",
           "faces": [{"x1": 1}], "face_count": 1, "status": "published", "run_id": "run-1"}
    erased = erased_row(row, "e-1")
    assert erased["status"] == "erased" and erased["reason"] == "erasure:e-1"
    assert erased["output_uri"] is None and erased["output_sha256"] is None and erased["face_count"] == 0
    assert all(erased[name] == row.get(name) for name in KEPT_COLUMNS)


def test_shard_format_from_output_uris() -> None:
    assert shard_format([{"output_uri": "/o/data/t.parquet#row=0"}]) == "parquet"
    assert shard_format([{"output_uri": "/o/data/shard.tar#key"}]) == "webdataset"
    assert shard_format([{"output_uri": "/o/data/a.jpg"}]) == "images"
    assert shard_format([{"output_uri": None}]) == ""


def test_erase_an_image_record_then_again(tmp_path: Path) -> None:
    _images_shard(tmp_path)
    assert set(manifest_files(str(tmp_path))) == {SPEC.shard_id}
    request = ErasureRequest(frozenset({"/in/a.jpg"}))
    done = erase_shard(str(tmp_path), SPEC.shard_id, request, "e-1")
    assert (done.erased, done.files_removed) == (1, 1)
    assert not (tmp_path / "data" / "a.jpg").exists() and (tmp_path / "data" / "b.jpg").exists()
    rows = {r["relative_path"]: r for r in read_shard_rows(str(tmp_path), SPEC.shard_id)}
    assert rows["a.jpg"]["status"] == "erased" and rows["b.jpg"]["status"] == "published"
    assert verify_shard(str(tmp_path), SPEC.shard_id, request) == []
    again = erase_shard(str(tmp_path), SPEC.shard_id, request, "e-2")
    assert (again.erased, again.already_erased) == (0, 1)


def test_verify_reports_an_output_left_behind(tmp_path: Path) -> None:
    _images_shard(tmp_path)
    request = ErasureRequest(frozenset({"/in/b.jpg"}))
    erase_shard(str(tmp_path), SPEC.shard_id, request, "e-1")
    (tmp_path / "data" / "b.jpg").write_bytes(b"restored from a backup")
    assert verify_shard(str(tmp_path), SPEC.shard_id, request) == [
        f"{SPEC.shard_id}: erased output b.jpg still exists"]


def test_erase_a_parquet_row_rewrites_the_table(tmp_path: Path) -> None:
    images = [jpeg_bytes(10), jpeg_bytes(20), jpeg_bytes(30)]
    pq.write_table(pa.table({"id": [0, 1, 2], "image": images}), tmp_path / "t.parquet")
    [spec] = plan_parquet_shards(str(tmp_path / "t.parquet"), "image")
    out = tmp_path / "out"
    commit(str(out), spec, list(read_parquet_shard(spec)))
    request = ErasureRequest(frozenset({f"{tmp_path / 't.parquet'}#row=1"}))
    done = erase_shard(str(out), spec.shard_id, request, "e-1")
    assert done.erased == 1 and done.data_rewritten == str(out / "data" / "t.parquet")
    assert pq.read_table(out / "data" / "t.parquet").column("id").to_pylist() == [0, 2]
    rows = sorted(read_shard_rows(str(out), spec.shard_id), key=lambda r: r["shard_index"])
    assert [r["status"] for r in rows] == ["published", "erased", "published"]
    assert rows[2]["output_uri"].endswith("t.parquet#row=1")  # the kept row's new position
    assert verify_shard(str(out), spec.shard_id, request, image_column="image") == []

    pq.write_table(pa.table({"id": [9], "image": [jpeg_bytes(99)]}), out / "data" / "t.parquet")
    with pytest.raises(ErasureError, match="match neither its manifest"):
        erase_shard(str(out), spec.shard_id, ErasureRequest(frozenset({f"{tmp_path / 't.parquet'}#row=0"})), "e-2")
