"""The Storage value: how stages reach stores (its endpoint only, never credentials), picklable."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from apache_beam.internal import pickler

from tests.s3server import s3_client
from transforms.storage import DEFAULT_STORAGE, Storage, create_exclusive, is_local, write_atomic


def test_storage_pickles_whole_and_holds_no_credentials(s3: str) -> None:
    storage = Storage(s3)
    assert pickle.loads(pickle.dumps(storage)) == storage
    assert pickler.loads(pickler.dumps(storage)) == storage  # as Beam ships it to remote workers
    payload = pickle.dumps(storage)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert os.environ[name].encode() not in payload


def test_endpoint_is_given_to_s3_uris_only() -> None:
    storage = Storage("http://127.0.0.1:9")
    assert storage.options("s3://bucket/key") == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    assert storage.options("/local/path") == {}
    assert storage.options("gs://bucket/key") == {}
    assert DEFAULT_STORAGE.options("s3://bucket/key") == {}  # AWS's own endpoint


def test_local_filesystem_writes_and_reads(tmp_path: Path) -> None:
    fs, path = DEFAULT_STORAGE.filesystem(str(tmp_path / "a" / "b.bin"))
    assert is_local(fs)
    write_atomic(fs, path, b"whole")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"whole"
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no partial left
    with DEFAULT_STORAGE.open(str(tmp_path / "a" / "b.bin")) as handle:
        assert handle.read() == b"whole"


def test_s3_filesystem_reaches_the_configured_endpoint(s3: str) -> None:
    s3_client(s3).create_bucket(Bucket="storage")  # type: ignore[attr-defined]
    storage = Storage(s3)
    fs, path = storage.filesystem("s3://storage/x/one.bin")
    assert not is_local(fs) and path == "storage/x/one.bin"
    assert create_exclusive(fs, path, b"first")
    assert not create_exclusive(fs, path, b"second")  # the second writer loses
    with storage.open("s3://storage/x/one.bin") as handle:
        assert handle.read() == b"first"
    body = s3_client(s3).get_object(Bucket="storage", Key="x/one.bin")["Body"].read()  # type: ignore[attr-defined]
    assert body == b"first"
