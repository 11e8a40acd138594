"""WebDataset tar shards and Parquet image tables, on local disk and on a real S3 API server."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from s3fs import S3FileSystem

from expectations.report import build_report
from pipelines.cli import main
from tests.datasets import add_member, face_photo, jpeg, write_parquet_files, write_tar_shards
from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY_SETS, run_job
from tests.s3server import s3_client
from transforms.io_webdataset import expand_braces, read_tar_shard, split_member_name
from transforms.records import ShardSpec


def _members(path: Path | bytes) -> list[tuple[str, bytes]]:
    source = io.BytesIO(path) if isinstance(path, bytes) else open(path, "rb")  # noqa: SIM115
    with source, tarfile.open(fileobj=source) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def _changed(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.int16)
    return float((np.abs(x - y).max(axis=-1) > 24).mean())


def test_brace_patterns_expand_with_padding() -> None:
    assert expand_braces("s3://b/shard-{000..002}.tar") == [
        "s3://b/shard-000.tar", "s3://b/shard-001.tar", "s3://b/shard-002.tar"]
    assert expand_braces("x/{a,b}/p-{8..10}.tar") == [
        "x/a/p-8.tar", "x/a/p-9.tar", "x/a/p-10.tar", "x/b/p-8.tar", "x/b/p-9.tar", "x/b/p-10.tar"]
    assert split_member_name("dir/key.seg.jpg") == ("dir/key", "seg.jpg")


def _check_tar_outputs(inputs: list[tuple[str, bytes]], outputs: list[tuple[str, bytes]]) -> None:
    assert [name for name, _ in outputs] == [name for name, _ in inputs]  # same members, same order
    faces_changed = 0
    for (name, original), (_, anonymized) in zip(inputs, outputs, strict=True):
        if name.endswith(".jpg"):
            faces_changed += _changed(original, anonymized) > 0.05
        else:
            assert anonymized == original, name  # sidecars byte for byte
    assert faces_changed >= 1


@pytest.mark.slow
def test_tar_shards_mirror_the_input(tmp_path: Path) -> None:
    shards = write_tar_shards(tmp_path / "in", shards=2, per_shard=3)
    rows = run_job(str(tmp_path / "in" / "shard-{000000..000001}.tar"), str(tmp_path / "out")).to_pylist()
    assert len(rows) == 6 and all(r["status"] == "published" for r in rows)
    for shard in shards:
        _check_tar_outputs(_members(shard), _members(tmp_path / "out" / "data" / shard.name))
    with tarfile.open(tmp_path / "out" / "data" / shards[0].name) as tar:
        assert {(m.uname, m.gname, m.mtime) for m in tar.getmembers()} == {("", "", 0)}
    # The steward's gallery shows anonymized tar members (never an original).
    report = build_report(str(tmp_path / "out"))
    gallery = sorted((tmp_path / "out" / "report" / "gallery").glob("*.jpg"))
    assert report.index and len(gallery) == 6


@pytest.mark.slow
@pytest.mark.parametrize("struct", [True, False])
def test_parquet_tables_keep_other_columns(tmp_path: Path, struct: bool) -> None:
    write_parquet_files(tmp_path / "in", files=2, rows=3, struct=struct)
    rows = run_job(str(tmp_path / "in" / "*.parquet"), str(tmp_path / "out")).to_pylist()
    assert len(rows) == 6 and all(r["status"] == "published" for r in rows)
    for name in ("part-00000.parquet", "part-00001.parquet"):
        source = pq.read_table(tmp_path / "in" / name)
        result = pq.read_table(tmp_path / "out" / "data" / name)
        assert result.schema == source.schema
        assert result.column("id").to_pylist() == source.column("id").to_pylist()
        assert result.column("label").to_pylist() == source.column("label").to_pylist()
        images_in, images_out = source.column("image").to_pylist(), result.column("image").to_pylist()
        if struct:
            assert [v["path"] for v in images_out] == [v["path"] for v in images_in]
            images_in, images_out = [v["bytes"] for v in images_in], [v["bytes"] for v in images_out]
        assert sum(_changed(a, b) > 0.05 for a, b in zip(images_in, images_out, strict=True)) >= 1
    build_report(str(tmp_path / "out"))
    assert len(list((tmp_path / "out" / "report" / "gallery").glob("*.jpg"))) == 6


def _bad_tar(path: Path) -> None:
    with tarfile.open(path, "w") as tar:
        for name, payload in [("ok.jpg", jpeg(face_photo(1))), ("ok.cls", b"1"),
                              ("../evil.jpg", jpeg(face_photo(3))), ("/abs.jpg", jpeg(face_photo(5))),
                              ("two.jpg", jpeg(face_photo(7))), ("two.png", jpeg(face_photo(9))),
                              ("labels-only.txt", b"no image here")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        link = tarfile.TarInfo("link.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)


def test_unsafe_and_odd_tar_members_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "bad.tar"
    _bad_tar(path)
    spec = ShardSpec("bad", "webdataset", (str(path),), ("bad.tar",), "data")
    records = {r.source_uri.split("#")[1]: r for r in read_tar_shard(spec)}
    assert records["ok"].status == "" and records["ok"].extras == (("cls", b"1"),)
    assert records["../evil"].reason == "read:unsafe_member_name"
    assert records["/abs"].reason == "read:unsafe_member_name"
    assert records["two"].reason == "read:multiple_images_in_sample"
    assert records["labels-only"].reason == "read:no_image_in_sample"
    assert records["link"].reason == "read:non_regular_member"
    assert all(r.data == b"" for k, r in records.items() if k != "ok")


@pytest.mark.slow
def test_corrupt_tar_publishes_only_what_was_read_whole(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    good = write_tar_shards(tmp_path / "src", shards=1, per_shard=4)[0].read_bytes()
    (tmp_path / "in" / "shard-000000.tar").write_bytes(good[: len(good) * 2 // 3])
    rows = run_job(str(tmp_path / "in" / "*.tar"), str(tmp_path / "out"), FixedBoxesFactory(), FixedBoxesFactory(),
                   identity_check=False, detector_extra="").to_pylist()
    reasons = [r["reason"] for r in rows if r["status"] == "quarantined"]
    assert any(reason.startswith("read:corrupt_tar") for reason in reasons)
    published = [r for r in rows if r["status"] == "published"]
    # The cut is inside sample 2's image: samples 0 and 1 were read whole and are published.
    assert sorted(r["relative_path"] for r in published) == ["sample000000.jpg", "sample000001.jpg"]
    out_members = _members(tmp_path / "out" / "data" / "shard-000000.tar")
    assert len({split_member_name(n)[0] for n, _ in out_members}) == len(published)
    for name, payload in out_members:
        if name.endswith(".jpg"):
            Image.open(io.BytesIO(payload)).load()  # every published image is whole


def test_parquet_without_the_image_column_is_a_config_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": [1], "picture": [b"x"]}), tmp_path / "in" / "a.parquet")
    code = main(["run", "--conf", "conf/base.yaml", *ACCOUNTABILITY_SETS, "--set", f"input={tmp_path}/in/a.parquet",
                 "--set", f"output={tmp_path}/out"])
    assert code == 2
    assert "image_column" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()



@pytest.mark.slow
def test_object_storage_in_and_out(s3: str, tmp_path: Path) -> None:
    client = s3_client(s3)
    for bucket in ("source", "anonymized"):
        client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    tars = write_tar_shards(tmp_path / "tars", shards=2, per_shard=2)
    tables = write_parquet_files(tmp_path / "tables", files=1, rows=3)
    for path in tars:
        client.upload_file(str(path), "source", f"wds/{path.name}")  # type: ignore[attr-defined]
    client.upload_file(str(tables[0]), "source", "hf/part-00000.parquet")  # type: ignore[attr-defined]

    rows = run_job("s3://source/wds/shard-{000000..000001}.tar", "s3://anonymized/wds", s3_endpoint=s3).to_pylist()
    assert len(rows) == 4 and all(r["status"] == "published" for r in rows)
    assert all(r["output_uri"].startswith("s3://anonymized/wds/data/") for r in rows)
    for path in tars:
        body = client.get_object(Bucket="anonymized", Key=f"wds/data/{path.name}")["Body"].read()  # type: ignore
        _check_tar_outputs(_members(path), _members(body))

    rows = run_job("s3://source/hf/part-00000.parquet", "s3://anonymized/hf", s3_endpoint=s3).to_pylist()
    assert len(rows) == 3
    body = client.get_object(Bucket="anonymized", Key="hf/data/part-00000.parquet")["Body"].read()  # type: ignore
    result, source = pq.read_table(io.BytesIO(body)), pq.read_table(tables[0])
    assert result.column("label").to_pylist() == source.column("label").to_pylist()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="anonymized")["Contents"]]  # type: ignore
    assert not [k for k in keys if "_staging" in k]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert all(secret not in str(r) for r in rows)
    manifests = [o["Key"] for o in client.list_objects_v2(Bucket="anonymized", Prefix="hf/")["Contents"]]  # type: ignore
    for key in manifests:
        assert secret.encode() not in client.get_object(Bucket="anonymized", Key=key)["Body"].read()  # type: ignore


def test_missing_bucket_and_wrong_credentials_fail_before_work(
        s3: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["run", "--conf", "conf/base.yaml", *ACCOUNTABILITY_SETS, "--set", f"s3_endpoint={s3}",
            "--set", f"output={tmp_path}/out"]
    assert main([*args, "--set", "input=s3://no-such-bucket/shard-{000..001}.tar"]) == 2
    err = capsys.readouterr().err
    assert "no-such-bucket" in err and "Traceback" not in err

    client = s3_client(s3)
    client.create_bucket(Bucket="locked")  # type: ignore[attr-defined]
    client.put_object(Bucket="locked", Key="shard-000000.tar", Body=b"")  # type: ignore[attr-defined]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    S3FileSystem.clear_instance_cache()  # as in a fresh process: credentials are read anew
    code = main([*args, "--set", "input=s3://locked/shard-000000.tar"])
    err = capsys.readouterr().err
    assert code == 2
    assert "denied" in err.lower() or "forbidden" in err.lower(), err
    assert "wrong-secret" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_key_repeated_after_other_samples_is_quarantined_alone(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with tarfile.open(tmp_path / "in" / "shard.tar", "w") as tar:
        for name, payload in [("a.jpg", jpeg(face_photo(1))), ("b.jpg", jpeg(face_photo(3))),
                              ("b.cls", b"3"), ("a.txt", b"stray caption")]:
            add_member(tar, name, payload)
    spec = ShardSpec("shard", "webdataset", (str(tmp_path / "in" / "shard.tar"),), ("shard.tar",), "data")
    records = list(read_tar_shard(spec))
    assert [(r.relative_path, r.reason) for r in records] == [("a.jpg", ""), ("b.jpg", ""), ("a", "read:repeated_key")]
    assert len({r.record_id for r in records}) == 3 and records[2].data == b""
    rows = run_job(str(tmp_path / "in" / "shard.tar"), str(tmp_path / "out"), FixedBoxesFactory(), FixedBoxesFactory(),
                   identity_check=False, detector_extra="").to_pylist()
    assert sorted((r["relative_path"], r["status"]) for r in rows) == [
        ("a", "quarantined"), ("a.jpg", "published"), ("b.jpg", "published")]
    assert [name for name, _ in _members(tmp_path / "out" / "data" / "shard.tar")] == ["a.jpg", "b.jpg", "b.cls"]


@pytest.mark.parametrize("member", ["sample000002.jpg", "sample000002.cls"])
def test_a_tar_broken_inside_a_sample_yields_the_samples_before_it_whole(tmp_path: Path, member: str) -> None:
    path = write_tar_shards(tmp_path / "src", shards=1, per_shard=4)[0]
    with tarfile.open(path) as tar:
        info = tar.getmember(member)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(path.read_bytes()[: info.offset_data + info.size // 2])
    spec = ShardSpec("cut", "webdataset", (str(cut),), ("cut.tar",), "data")
    records = list(read_tar_shard(spec))
    assert [(r.relative_path, r.reason) for r in records[:2]] == [("sample000000.jpg", ""), ("sample000001.jpg", "")]
    assert [len(r.extras) for r in records[:2]] == [2, 2]  # every sidecar
    assert all(r.reason.startswith("read:corrupt_tar") and not r.data for r in records[2:]) and len(records) >= 3
