"""Lose nothing, delete nothing: crashes, changed inputs, overlapping paths, concurrent runs and
output locations that cannot be written (issue 17). Runs use the fixed-box test detector."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from s3fs import S3FileSystem

from pipelines.cli import main
from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY_SETS, BASE_CONF, run_job
from tests.s3server import free_port, s3_client
from transforms.lease import LeaseHeldError, LeaseLostError, OutputLease, check_held, current_lease, host_identity
from transforms.locations import check_no_overlap
from transforms.storage import DEFAULT_STORAGE, Storage

FAST = {"identity_check": False, "detector_extra": ""}


def _images(folder: Path, names: list[str], size: tuple[int, int] = (64, 48)) -> list[Path]:
    """Small face-less JPEGs with distinct pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, name in enumerate(names):
        rng = np.random.default_rng(n)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")
        paths.append(path)
    return paths


def _job(source: Path | str, output: Path | str, **settings: Any) -> list[dict[str, Any]]:
    table = run_job(str(source), str(output), FixedBoxesFactory(), FixedBoxesFactory(), **(FAST | settings))
    return list(table.to_pylist())


def _data_files(output: Path) -> set[str]:
    data = output / "data"
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()} if data.exists() else set()


def _cli(source: Path | str, output: Path | str, *sets: str) -> list[str]:
    args = ["run", "--conf", BASE_CONF, *ACCOUNTABILITY_SETS, "--set", f"input={source}",
            "--set", f"output={output}", "--set", "identity_check=false", "--set", "detector_extra="]
    return [*args, *(arg for s in sets for arg in ("--set", s))]


def test_excluded_record_left_by_a_crashed_attempt_is_removed_at_commit(tmp_path: Path) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    paths = _images(source, ["a.jpg", "b.jpg", "c.jpg"])
    _job(source, output)
    # What a kill between a shard's data and its manifest leaves (ANONYMIZE_FAILPOINT=before_manifest):
    # the images written, no manifest.
    for manifest in (output / "manifest").glob("*.parquet"):
        manifest.unlink()
    rows = {Path(r["source_uri"]).name: r for r in _job(source, output, exclude_source_uris=str(paths[1]))}
    assert rows["b.jpg"]["status"] == "excluded"
    assert _data_files(output) == {"a.jpg", "c.jpg"}  # data/ holds exactly the published records
    # An output an older version left in that state: erasure removes the file too.
    (output / "data" / "b.jpg").write_bytes(paths[1].read_bytes())
    assert main(["erase", str(output), "--source-uri", str(paths[1])]) == 0
    assert _data_files(output) == {"a.jpg", "c.jpg"}


@pytest.mark.parametrize("layout", ["input_in_output", "output_in_input", "same", "output_linked_into_input"])
def test_overlapping_input_and_output_are_refused_before_work(tmp_path: Path, layout: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    if layout == "input_in_output":
        source, output = tmp_path / "out" / "in", tmp_path / "out"
    elif layout == "output_in_input":
        source, output = tmp_path / "in", tmp_path / "in" / "anonymized"
    elif layout == "same":
        source, output = tmp_path / "in", tmp_path / "in"
    else:
        source, output = tmp_path / "in", tmp_path / "link"
        (tmp_path / "in" / "anonymized").mkdir(parents=True)
        output.symlink_to(tmp_path / "in" / "anonymized")
    _images(source, ["a.jpg", ".staging-mine.jpg"])
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(_cli(source, output)) == 2
    err = capsys.readouterr().err
    assert "input, output:" in err and "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written, nothing removed


@pytest.mark.parametrize(("source", "output", "overlap"), [
    ("s3://bucket/train/shard-{000000..000009}.tar", "s3://bucket/train/anonymized", True),
    ("s3://bucket/train/*.parquet", "s3://bucket", True),
    ("s3://bucket/train/anonymized/*.jpg", "s3://bucket/train", True),
    ("s3://bucket/train", "s3://bucket/train/", True),
    ("s3://bucket/train", "s3://bucket/train-anonymized", False),
    ("s3://bucket/train", "s3://other/train", False),
])
def test_object_store_prefixes_overlap_component_by_component(source: str, output: str, overlap: bool) -> None:
    if overlap:
        with pytest.raises(ValueError, match="input, output"):
            check_no_overlap(source, output)
    else:
        check_no_overlap(source, output)


def test_clean_up_touches_only_what_the_product_created(tmp_path: Path) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["a.jpg", ".staging-photo.jpg"])
    mine = [output / ".staging-notes.txt", output / "data" / ".staging-keep", output / "notes" / ".staging-x"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"the user's own file")
    leftover = output / "data" / ".anonymize-partial-0123-a.jpg"  # a killed run's half-written file
    leftover.write_bytes(b"half")
    rows = _job(source, output)
    assert sorted(Path(r["source_uri"]).name for r in rows) == [".staging-photo.jpg", "a.jpg"]
    assert all(r["status"] == "published" for r in rows)
    assert all(path.read_bytes() == b"the user's own file" for path in mine)
    assert not leftover.exists() and not (output / "_staging").exists()


def _exactly_once(output: Path, source: Path) -> list[dict[str, Any]]:
    """Every input file in the manifests exactly once; every data file a published row's."""
    rows = pq.read_table(output / "manifest").to_pylist()
    names = sorted(Path(r["source_uri"]).name for r in rows)
    assert names == sorted(p.name for p in source.iterdir())
    assert _data_files(output) == {r["relative_path"] for r in rows if r["status"] == "published"}
    return rows


def test_resume_over_a_grown_input_redoes_the_shards_whose_records_moved(tmp_path: Path) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"])
    _job(source, output, shard_size=2)
    # Killed after committing images-000000 {b, c} and images-000001 {d, e}, before images-000002 {f}.
    (output / "manifest" / "images-000002.parquet").unlink()
    before = (output / "manifest" / "images-000000.parquet").read_bytes()
    _images(source, ["a.jpg"])  # shifts every shard boundary: {a, b} {c, d} {e, f}
    _job(source, output, shard_size=2)
    rows = _exactly_once(output, source)
    assert {Path(r["source_uri"]).name: r["shard_id"] for r in rows} == {
        "a.jpg": "images-000000", "b.jpg": "images-000000", "c.jpg": "images-000001",
        "d.jpg": "images-000001", "e.jpg": "images-000002", "f.jpg": "images-000002"}
    assert (output / "manifest" / "images-000000.parquet").read_bytes() != before


def test_resume_refuses_an_input_that_lost_a_shard_or_would_bring_back_an_erased_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    paths = _images(source, ["b.jpg", "c.jpg", "d.jpg"])
    assert main(_cli(source, output, "shard_size=2")) == 0
    assert main(["erase", str(output), "--source-uri", str(paths[2])]) == 0
    capsys.readouterr()
    fingerprint = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}

    _images(source, ["a.jpg"])  # {a, b} {c, d}: images-000001 now holds the erased d again
    assert main(_cli(source, output, "shard_size=2")) == 2
    err = capsys.readouterr().err
    assert "input: changed" in err and "images-000001" in err and "erased" in err
    paths[2].unlink()
    (source / "a.jpg").unlink()
    paths[1].unlink()  # {b}: images-000001 is no longer a shard of the input
    assert main(_cli(source, output, "shard_size=2")) == 2
    err = capsys.readouterr().err
    assert "images-000001 is no longer a shard of the input" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in output.rglob("*") if p.is_file()} == fingerprint  # nothing done


def _write_lease(output: Path, generation: int, **fields: Any) -> None:
    folder = output / "_lease"
    folder.mkdir(parents=True, exist_ok=True)
    lease = {"run_id": "other", "purpose": "run", "host": host_identity(), "pid": os.getpid(), "released": False,
             "expires": (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)).isoformat()}
    (folder / f"{generation:012d}.json").write_text(json.dumps(lease | fields))


def test_a_second_run_on_an_output_in_use_stops_before_work(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["a.jpg"])
    with OutputLease(str(output), DEFAULT_STORAGE, "first-run", 60):  # a live run (this process) holds the output
        staged = output / "_staging" / "first-run" / "images-000000" / "000000000"
        staged.parent.mkdir(parents=True)
        staged.write_bytes(b"the first run's staged output")
        assert main(_cli(source, output)) == 2
        err = capsys.readouterr().err
        assert "is in use by run first-run" in err and "Traceback" not in err
        assert staged.read_bytes() == b"the first run's staged output"
        assert not (output / "manifest").exists() and not (output / "audit").exists()
        with pytest.raises(LeaseHeldError):
            OutputLease(str(output), DEFAULT_STORAGE, "third-run").acquire()
        assert main(["erase", str(output), "--source-uri", str(source / "a.jpg")]) == 2  # nor an erasure
        assert main(["purge", str(output), "--older-than", "0"]) == 2
        assert capsys.readouterr().err.count("is in use by run first-run") == 2
    assert current_lease(str(output))["released"]
    assert main(_cli(source, output)) == 0  # once released, the next run takes the next generation
    assert current_lease(str(output))["generation"] == 1


def test_stale_leases_are_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["a.jpg"])
    killed = subprocess.run([sys.executable, "-c", "import os, signal; print(os.getpid())"], capture_output=True,
                            text=True, check=True)
    _write_lease(output, 0, pid=int(killed.stdout))  # a run of this host whose process is gone
    assert main(_cli(source, output)) == 0
    assert current_lease(str(output))["generation"] == 1
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)).isoformat()
    _write_lease(output, 2, host="elsewhere/boot/ns", pid=1, expires=past)  # expired, on another host
    assert main(_cli(source, output)) == 0
    _write_lease(output, 4, host="elsewhere/boot/ns", pid=1)  # live on another host: not taken
    assert main(_cli(source, output)) == 2
    assert "in use by run other (host elsewhere" in capsys.readouterr().err


def test_a_run_that_lost_its_lease_does_not_commit(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    lease = OutputLease(output, DEFAULT_STORAGE, "slow-run", 1000)  # no renewal during the test
    lease.acquire()
    check_held(output, "slow-run")
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)).isoformat()
    _write_lease(tmp_path / "out", 0, run_id="slow-run", expires=past)  # it froze past its expiry
    with OutputLease(output, DEFAULT_STORAGE, "new-run"):
        with pytest.raises(LeaseLostError):
            check_held(output, "slow-run")
        lease.release()  # a late release leaves the new holder's lease alone
        check_held(output, "new-run")


def test_lease_on_object_storage(s3: str) -> None:
    s3_client(s3).create_bucket(Bucket="leased")  # type: ignore[attr-defined]
    first = OutputLease("s3://leased/out", Storage(s3), "first", 60)
    first.acquire()
    with pytest.raises(LeaseHeldError, match="in use by run first"):
        OutputLease("s3://leased/out", Storage(s3), "second", 60).acquire()
    first.release()
    with OutputLease("s3://leased/out", Storage(s3), "second", 60):
        check_held("s3://leased/out", "second", Storage(s3))
        assert current_lease("s3://leased/out", Storage(s3))["generation"] == 1


@pytest.mark.parametrize("case", ["output_is_a_file", "data_is_a_file", "manifest_is_a_file", "read_only"])
def test_unwritable_output_locations_fail_before_work(tmp_path: Path, case: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["a.jpg"])
    if case == "output_is_a_file":
        output.write_bytes(b"a file")
        blocked = output
    elif case == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes through read-only permissions")
        output.mkdir()
        output.chmod(0o555)
        blocked = output
    else:
        blocked = output / case.split("_", 1)[0]
        output.mkdir()
        blocked.write_bytes(b"a file")
    assert main(_cli(source, output)) == 2
    err = capsys.readouterr().err
    assert f"output: cannot write to {blocked}" in err or f"output: {blocked} is a file" in err, err
    assert "Traceback" not in err
    assert not (output / "audit").exists() if output.is_dir() else True


def test_unreachable_store_and_missing_credentials_fail_before_work(
        s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in"
    _images(source, ["a.jpg"])
    s3_client(s3).create_bucket(Bucket="target")  # type: ignore[attr-defined]
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main(_cli(source, "s3://target/out", f"s3_endpoint={nowhere}")) == 2
    err = capsys.readouterr().err
    assert "output: cannot write to s3://target/out" in err and "Traceback" not in err, err
    assert time.monotonic() - started < 30
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    S3FileSystem.clear_instance_cache()
    assert main(_cli(source, "s3://target/out", f"s3_endpoint={s3}")) == 2
    err = capsys.readouterr().err
    assert "output: cannot write to s3://target/out" in err and "Credentials" in err and "Traceback" not in err, err


def test_a_read_only_output_prefix_fails_before_work(s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in"
    _images(source, ["a.jpg"])
    s3_client(s3).create_bucket(Bucket="readonly")  # type: ignore[attr-defined]
    iam = boto3.client("iam", endpoint_url=s3, region_name="us-east-1")
    iam.create_user(UserName="reader")
    policy = iam.create_policy(PolicyName="read-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
                                                "Resource": "*"}]}))
    iam.attach_user_policy(UserName="reader", PolicyArn=policy["Policy"]["Arn"])
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    S3FileSystem.clear_instance_cache()
    assert main(_cli(source, "s3://readonly/out", f"s3_endpoint={s3}")) == 2
    err = capsys.readouterr().err
    assert "output: cannot write to s3://readonly/out" in err and "Traceback" not in err, err
    assert key["SecretAccessKey"] not in err

def test_symlinks_and_misnamed_images_are_rows_with_a_reason(tmp_path: Path) -> None:
    source, output, outside = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    _images(source, ["a.jpg", "photo.heic"])  # JPEG bytes named .heic
    _images(outside, ["secret.jpg", "album/b.jpg"])
    (source / "link.jpg").symlink_to(outside / "secret.jpg")
    (source / "linked-folder").symlink_to(outside / "album")
    rows = {r["relative_path"]: (r["status"], r["reason"]) for r in _job(source, output)}
    assert rows == {"a.jpg": ("published", None),
                    "photo.heic": ("quarantined", "decode:extension_mismatch:JPEG"),
                    "link.jpg": ("quarantined", "read:symlink"),
                    "linked-folder": ("quarantined", "read:symlinked_folder")}
    assert _data_files(output) == {"a.jpg"}


def test_a_run_with_nothing_left_to_do_still_clears_what_a_killed_run_left(tmp_path: Path) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    _images(source, ["a.jpg"])
    _job(source, output)
    staged = output / "_staging" / "killed-run" / "images-000000" / "000000000"  # killed after its commit
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"staged")
    _job(source, output)
    assert not (output / "_staging").exists()
