"""transforms/staging.py: verified bytes go to _staging and come back whole; clean-up removes only
what it names (one shard, one run, or what killed runs left), never a user's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3server import s3_client
from tests.unit_data import jpeg_bytes, record
from transforms.staging import STAGING_FOLDER, StageOutput, read_staged, remove_staging, staging_path
from transforms.storage import DEFAULT_STORAGE, PARTIAL_PREFIX, Storage


def test_stage_writes_the_bytes_and_passes_the_record_on_without_them(tmp_path: Path) -> None:
    data = jpeg_bytes(40)
    [staged] = list(StageOutput(str(tmp_path), "run-1").process(record("shard-a", 3, "a.jpg", data)))
    assert staged.data == b"" and staged.staged_path == staging_path(str(tmp_path), "run-1", "shard-a", 3)
    assert Path(staged.staged_path).read_bytes() == data
    assert read_staged(staged, DEFAULT_STORAGE, str(tmp_path)) == data


def test_a_quarantined_record_is_not_staged(tmp_path: Path) -> None:
    bad = record("shard-a", 0, "a.jpg", jpeg_bytes(40)).quarantine("decode:broken")
    assert list(StageOutput(str(tmp_path), "run-1").process(bad)) == [bad]
    assert not (tmp_path / STAGING_FOLDER).exists()


def test_output_and_run_id_are_required() -> None:
    for output, run_id in (("", "run-1"), ("/out", "")):
        with pytest.raises(ValueError, match="output and run_id are required"):
            StageOutput(output, run_id)


def test_remove_staging_removes_what_it_names_only(tmp_path: Path) -> None:
    out = str(tmp_path)
    for run_id, shard_id in (("run-1", "a"), ("run-1", "b"), ("run-2", "a")):
        list(StageOutput(out, run_id).process(record(shard_id, 0, "x.jpg", b"bytes")))
    staging = tmp_path / STAGING_FOLDER
    remove_staging(out, DEFAULT_STORAGE, "run-1", "a")
    assert sorted(p.name for p in (staging / "run-1").iterdir()) == ["b"]
    remove_staging(out, DEFAULT_STORAGE, "run-1")
    assert sorted(p.name for p in staging.iterdir()) == ["run-2"]  # another run's staging stays
    remove_staging(out, DEFAULT_STORAGE, "run-2")
    assert not staging.exists()  # the last run's clean-up removes the empty folder

    (tmp_path / "data" / "sub").mkdir(parents=True)
    leftover = tmp_path / "data" / "sub" / f"{PARTIAL_PREFIX}123-a.jpg"
    leftover.write_bytes(b"half")
    users = [tmp_path / "data" / ".hidden", tmp_path / "notes" / f"{PARTIAL_PREFIX}x", tmp_path / "data" / "a.jpg"]
    for path in users:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"keep")
    list(StageOutput(out, "killed").process(record("a", 0, "x.jpg", b"bytes")))
    remove_staging(out)  # under the lease: what killed runs left
    assert not staging.exists() and not leftover.exists()
    assert all(path.read_bytes() == b"keep" for path in users)


def test_staging_on_object_storage(s3: str) -> None:
    s3_client(s3).create_bucket(Bucket="staging")  # type: ignore[attr-defined]
    storage, out = Storage(s3), "s3://staging/out"
    [staged] = list(StageOutput(out, "run-1", storage).process(record("a", 0, "x.jpg", b"remote bytes")))
    assert read_staged(staged, storage, out) == b"remote bytes"
    remove_staging(out, storage, "run-1")
    fs, _ = storage.filesystem(out)
    assert not fs.exists("staging/out/_staging/run-1")
