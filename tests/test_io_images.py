"""transforms/io_images.py: image folders are listed sorted and cut into shards, read with their
hashes (links quarantined, never followed), and written back under data/ by relative path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.s3server import s3_client
from tests.unit_data import jpeg_bytes
from transforms.io_images import plan_image_shards, read_image_shard, record_id_for, write_image_shard
from transforms.storage import DEFAULT_STORAGE, Storage


def _tree(root: Path) -> None:
    for rel, shade in (("b.jpg", 10), ("a.png", 20), ("sub/c.JPEG", 30), ("sub/d.webp", 40)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg_bytes(shade))
    (root / "notes.txt").write_text("not an image")


def test_plan_lists_images_sorted_and_cuts_shards(tmp_path: Path) -> None:
    _tree(tmp_path / "in")
    shards = plan_image_shards(str(tmp_path / "in"), 3)
    assert [s.shard_id for s in shards] == ["images-000000", "images-000001"]
    assert [rel for s in shards for rel in s.relative_paths] == ["a.png", "b.jpg", "sub/c.JPEG", "sub/d.webp"]
    assert shards[0].input_uris[0] == str(tmp_path / "in" / "a.png") and shards[0].output_name == "data"
    globbed = plan_image_shards(str(tmp_path / "in" / "*.jpg"), 10)
    assert globbed[0].relative_paths == ("b.jpg",)
    single = plan_image_shards(str(tmp_path / "in" / "sub" / "c.JPEG"), 10)
    assert single[0].relative_paths == ("c.JPEG",)


def test_plan_fails_on_missing_or_image_less_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing found"):
        plan_image_shards(str(tmp_path / "none"), 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no image files"):
        plan_image_shards(str(tmp_path / "empty"), 2)


def test_read_gives_bytes_hashes_and_quarantines_links(tmp_path: Path) -> None:
    _tree(tmp_path / "in")
    os.symlink(tmp_path / "in" / "b.jpg", tmp_path / "in" / "link.jpg")
    [spec] = plan_image_shards(str(tmp_path / "in"), 10)
    records = {r.relative_path: r for r in read_image_shard(spec)}
    data = (tmp_path / "in" / "b.jpg").read_bytes()
    b = records["b.jpg"]
    assert b.data == data and b.source_sha256 == hashlib.sha256(data).hexdigest()
    assert b.record_id == record_id_for(str(tmp_path / "in" / "b.jpg")) and not b.is_quarantined
    link = records["link.jpg"]
    assert link.is_quarantined and link.reason == "read:symlink" and link.data == b""
    assert [r.index for r in read_image_shard(spec)] == list(range(len(spec.input_uris)))


def test_write_publishes_by_relative_path_and_removes_withheld(tmp_path: Path) -> None:
    _tree(tmp_path / "in")
    [spec] = plan_image_shards(str(tmp_path / "in"), 10)
    records = list(read_image_shard(spec))
    out = tmp_path / "out"
    (out / "data" / "sub").mkdir(parents=True)
    (out / "data" / "sub" / "c.JPEG").write_bytes(b"stale")
    records[2] = records[2].quarantine("decode:broken")  # sub/c.JPEG
    written = write_image_shard(spec, records, str(out), DEFAULT_STORAGE, lambda r: b"anonymized " + r.data[:4])
    assert set(written) == {r.record_id for r in records if not r.is_quarantined}
    assert (out / "data" / "a.png").read_bytes() == b"anonymized " + records[0].data[:4]
    assert written[records[3].record_id] == str(out / "data" / "sub" / "d.webp")
    assert not (out / "data" / "sub" / "c.JPEG").exists()


def test_images_on_object_storage(s3: str) -> None:
    client = s3_client(s3)
    client.create_bucket(Bucket="images")  # type: ignore[attr-defined]
    for key in ("in/x/2.jpg", "in/1.jpg", "in/skip.txt"):
        client.put_object(Bucket="images", Key=key, Body=jpeg_bytes(60))  # type: ignore[attr-defined]
    storage = Storage(s3)
    [spec] = plan_image_shards("s3://images/in", 10, storage)
    assert spec.relative_paths == ("1.jpg", "x/2.jpg") and spec.input_uris[0] == "s3://images/in/1.jpg"
    records = list(read_image_shard(spec, storage))
    assert [r.data for r in records] == [jpeg_bytes(60)] * 2
    written = write_image_shard(spec, records, "s3://images/out", storage, lambda r: r.data)
    assert sorted(written.values()) == ["s3://images/out/data/1.jpg", "s3://images/out/data/x/2.jpg"]
    body = client.get_object(Bucket="images", Key="out/data/x/2.jpg")["Body"].read()  # type: ignore[attr-defined]
    assert body == jpeg_bytes(60)
