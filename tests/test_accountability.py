"""GDPR accountability: required purpose and legal basis, the audit log's hash chain, exclusions
that are never decoded, DPIA material with the run's figures, retention purge, and erasure on a
real S3 API server (with a crash between a shard's rewrite and its manifest)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.cli import main
from tests.datasets import add_member, face_photo, jpeg
from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY_SETS, run_job
from tests.s3server import s3_client
from transforms.audit import append_entry, entry_path, verify_chain
from transforms.storage import DEFAULT_STORAGE, create_exclusive

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "conf" / "base.yaml")
SENTINEL = b"EXCLUDED-SENTINEL"


def _subject_tars(folder: Path, shards: int, per_shard: int, undecodable_subject: str = "") -> list[Path]:
    """Tar shards whose samples carry ``{"subject_id": "person-<n % 3>"}``; the named subject's
    images are bytes no decoder accepts (so decoding them would show)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = folder / f"shard-{s:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                n = s * per_shard + i
                subject = f"person-{n % 3}"
                image = b"\xff\xd8" + SENTINEL if subject == undecodable_subject else jpeg(face_photo(n))
                add_member(tar, f"s{s}i{i}.jpg", image)
                add_member(tar, f"s{s}i{i}.json", json.dumps({"subject_id": subject}).encode())
        paths.append(path)
    return paths


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_run_without_purpose_or_legal_basis_fails_before_work(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _subject_tars(tmp_path / "in", 1, 1)
    out = tmp_path / "out"
    args = ["run", "--conf", BASE, "--set", f"input={tmp_path}/in/*.tar", "--set", f"output={out}"]
    assert main([*args, "--set", "purpose=research"]) == 2
    err = capsys.readouterr().err
    assert "legal_basis: required" in err and "purpose" not in err.split("legal_basis")[0].split("error:")[-1]
    assert main(args) == 2
    assert "purpose, legal_basis: required" in capsys.readouterr().err
    assert main([*args, *ACCOUNTABILITY_SETS, "--set", "biometric_processing=true"]) == 2
    assert "special_category_condition: required" in capsys.readouterr().err
    assert main([*args, "--set", "purpose=research", "--set", "legal_basis=because"]) == 2
    assert "legal_basis" in capsys.readouterr().err
    assert not out.exists()  # nothing written, not even an audit entry


def test_audit_chain_detects_an_edited_entry_and_refuses_overwrites(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    for kind in ("run_started", "run", "erasure"):
        append_entry(out, kind, {"records": 3}, operator="tester")
    assert verify_chain(out).ok and verify_chain(out).entries == 3
    assert main(["audit", "verify", out]) == 0
    fs, root = DEFAULT_STORAGE.filesystem(out)
    assert not create_exclusive(fs, entry_path(root, 1), b"{}")  # an entry is never overwritten
    assert append_entry(out, "purge", {}, operator="tester")["seq"] == 3  # a late writer appends after the head

    path = Path(entry_path(root, 1))
    path.write_bytes(path.read_bytes().replace(b'"records":3', b'"records":2'))
    chain = verify_chain(out)
    assert not chain.ok
    assert any(p.startswith("entry 1: content does not match") for p in chain.problems)
    assert any(p.startswith("entry 2: prev_sha256") for p in chain.problems)
    assert main(["audit", "verify", out]) == 1
    assert "entry 1" in capsys.readouterr().err
    Path(entry_path(root, 2)).unlink()
    assert any("entry 2: missing" in p for p in verify_chain(out).problems)


@pytest.mark.slow
def test_exclusions_never_decoded_then_dpia_and_purge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    tars = _subject_tars(tmp_path / "in", 2, 3, undecodable_subject="person-1")
    seen: list[str] = []
    real_open = Image.open

    def watching_open(fp: object, *args: object, **kwargs: object) -> Image.Image:
        if isinstance(fp, io.BytesIO) and SENTINEL in fp.getvalue():
            seen.append("excluded bytes reached a decoder")
        return real_open(fp, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", watching_open)
    objections = tmp_path / "objections.txt"
    objections.write_text(f"# withdrawn consent\n{tars[1]}#s1i2\n")
    out = tmp_path / "out"
    assert main(["run", "--conf", BASE, "--set", f"input={tmp_path}/in/*.tar", "--set", f"output={out}",
                 *ACCOUNTABILITY_SETS, "--set", "subject_field=json:subject_id",
                 "--set", "exclude_subject_ids=person-1",
                 "--set", f"exclude_source_uris_file={objections}", "--set", "retention_days=30",
                 "--set", "controller=Test Controller", "--runner=DirectRunner"]) == 0
    assert seen == []
    rows = {r["source_uri"].split("#")[1]: r for r in pq.read_table(out / "manifest").to_pylist()}
    excluded = {k for k, r in rows.items() if r["status"] == "excluded"}
    assert excluded == {"s0i1", "s1i1", "s1i2"}  # person-1 (n=1, 4) and the objected URI
    assert rows["s0i1"]["reason"] == "exclusion:subject" and rows["s1i2"]["reason"] == "exclusion:source"
    assert all(rows[k]["output_uri"] is None and rows[k]["source_sha256"] is None for k in excluded)
    assert {r["subject_id"] for r in rows.values()} == {"person-0", "person-1", "person-2"}
    assert all(r["status"] == "published" for k, r in rows.items() if k not in excluded)
    assert set(_members((out / "data" / "shard-000001.tar").read_bytes())) == {"s1i0.jpg", "s1i0.json"}
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert (summary["inputs"], summary["published"], summary["excluded"]) == (6, 3, 3)
    assert summary["checks"]["inputs_equal_published_quarantined_excluded_erased"] and summary["passed"]
    assert "person-1" not in (out / "report" / "summary.json").read_text()

    entries = [json.loads(p.read_text()) for p in sorted((out / "audit").glob("*.json"))]
    assert [e["kind"] for e in entries] == ["run_started", "run"]
    run = entries[1]
    assert run["legal_basis_article"] == "Art. 6(1)(f)" and run["purpose"] == "automated tests of the anonymizer"
    assert run["counts"]["this_run"] == {"excluded": 3, "published": 3}
    assert run["exclusions"]["subject_ids"] == 1 and run["detectors"]["detect"]["weights_sha256"]
    assert run["retention_days"] == 30 and run["retention_until"] and run["code"]["version"]
    assert "person-1" not in json.dumps(entries) and str(tars[1]) + "#s1i2" not in json.dumps(entries)

    assert main(["dpia", str(out)]) == 0
    document = (out / "report" / "dpia.md").read_text()
    assert f"| inputs | {summary['inputs']} |" in document and "| excluded | 3 |" in document
    for band, count in summary["faces_per_size_band"].items():
        assert f"| {band} | {count} |" in document
    method, identity = next(iter(summary["identity"].items()))
    assert f"| {method} | {identity['faces']} | {identity['checked']} |" in document
    assert "automated tests of the anonymizer" in document and "Art. 6(1)(f)" in document
    assert "Test Controller" in document and "TO BE COMPLETED BY THE CONTROLLER" in document
    assert "hash chain intact" in document and "Art. 35(7)(c)" in document
    assert "automated tests of the anonymizer" in (out / "report" / "dpia.html").read_text()

    capsys.readouterr()
    assert main(["purge", str(out)]) == 0  # retention (30 days) not over: nothing removed
    assert "purged 0 shards" in capsys.readouterr().out and (out / "manifest" / "shard-000000.parquet").exists()
    assert main(["purge", str(out), "--older-than", "0"]) == 0
    assert "purged 2 shards (6 records, 2 data files)" in capsys.readouterr().out
    assert not list((out / "data").glob("*.tar")) and not list((out / "manifest").glob("*.parquet"))
    assert not (out / "report").exists()
    assert main(["audit", "verify", str(out)]) == 0
    assert [json.loads(p.read_text())["kind"] for p in sorted((out / "audit").glob("*.json"))][-2:] == [
        "purge", "purge"]



def _objects(client: object, prefix: str) -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket="out", Prefix=prefix).get("Contents", [])  # type: ignore[attr-defined]
    return {o["Key"]: client.get_object(Bucket="out", Key=o["Key"])["Body"].read()  # type: ignore[attr-defined]
            for o in listing}


def _erase_cli(output: str, endpoint: str, *ids: str, failpoint: str = "") -> int:
    command = [sys.executable, "-m", "pipelines.cli", "erase", output, "--s3-endpoint", endpoint, *ids]
    env = dict(os.environ, ANONYMIZE_FAILPOINT=failpoint)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=300).returncode


@pytest.mark.slow
def test_erasure_on_object_storage_is_atomic_verified_and_idempotent(s3: str, tmp_path: Path) -> None:
    client = s3_client(s3)
    for bucket in ("source", "out"):
        client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    for path in _subject_tars(tmp_path / "tars", 3, 3):
        client.upload_file(str(path), "source", f"wds/{path.name}")  # type: ignore[attr-defined]
    images = [jpeg(face_photo(i)) for i in range(4)]
    table = pa.table({"id": [0, 1, 2, 3], "subject": ["p-a", "p-b", "p-a", "p-c"],
                      "image": [{"bytes": b, "path": f"{i}.jpg"} for i, b in enumerate(images)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    client.put_object(Bucket="source", Key="hf/part-0.parquet", Body=buffer.getvalue())  # type: ignore
    fast = {"detector_factory": FixedBoxesFactory([(20, 20, 80, 90, 0.99)]), "verify_factory": FixedBoxesFactory(),
            "identity_check": False, "s3_endpoint": s3}
    run_job("s3://source/wds/*.tar", "s3://out/wds", subject_field="json:subject_id", **fast)
    run_job("s3://source/hf/part-0.parquet", "s3://out/hf", subject_field="subject", **fast)
    before = _objects(client, "wds/")
    assert sum(1 for k in before if k.startswith("wds/manifest/")) == 3

    # person-1 is s0i1, s1i1 and s2i1; s2i2 is named by source URI. Killed after the first shard's data
    # was rewritten, before its manifest: the old manifest and the new data file.
    ids = ["--subject-id", "person-1", "--source-uri", "s3://source/wds/shard-000002.tar#s2i2"]
    assert _erase_cli("s3://out/wds", s3, *ids, failpoint="erase_before_manifest:1") == -signal.SIGKILL
    middle = _objects(client, "wds/")
    assert "s0i1.jpg" not in _members(middle["wds/data/shard-000000.tar"])
    assert middle["wds/manifest/shard-000000.parquet"] == before["wds/manifest/shard-000000.parquet"]
    assert not [k for k in middle if k.startswith("wds/audit/")]

    assert _erase_cli("s3://out/wds", s3, *ids) == 0
    after = _objects(client, "wds/")
    for shard, gone in (("shard-000000", {"s0i1"}), ("shard-000001", {"s1i1"}), ("shard-000002", {"s2i1", "s2i2"})):
        old, new = _members(before[f"wds/data/{shard}.tar"]), _members(after[f"wds/data/{shard}.tar"])
        assert new == {name: data for name, data in old.items() if name.split(".")[0] not in gone}
        rows = pq.read_table(io.BytesIO(after[f"wds/manifest/{shard}.parquet"])).to_pylist()
        old_rows = {r["record_id"]: r for r in pq.read_table(io.BytesIO(before[f"wds/manifest/{shard}.parquet"]))
                    .to_pylist()}
        for row in rows:
            if row["source_uri"].split("#")[1] in gone:
                assert row["status"] == "erased" and row["output_uri"] is None and row["faces"] == []
            else:
                assert row == old_rows[row["record_id"]]  # every other row unchanged
    entries = [json.loads(v) for k, v in sorted(after.items()) if k.startswith("wds/audit/")]
    assert [e["kind"] for e in entries] == ["erasure"]
    assert entries[0]["records_erased"] == 4 and entries[0]["verified"] is True
    assert entries[0]["requested"]["subject_ids"] == ["person-1"]

    assert _erase_cli("s3://out/wds", s3, *ids) == 0  # again: nothing changes but the log
    again = _objects(client, "wds/")
    kept = ("wds/audit/", "wds/report/", "wds/_lease/")  # the log, the report, and each erasure's lease
    assert {k: v for k, v in again.items() if not k.startswith(kept)} == {
        k: v for k, v in after.items() if not k.startswith(kept)}
    last = json.loads(again[max(k for k in again if k.startswith("wds/audit/"))])
    assert (last["records_erased"], last["records_already_erased"]) == (0, 4)
    assert main(["audit", "verify", "s3://out/wds", "--s3-endpoint", s3]) == 0

    # Parquet: rows renumbered, a crash after the rewrite recognised by the rows' hashes.
    hf_before = _objects(client, "hf/")
    assert _erase_cli("s3://out/hf", s3, "--subject-id", "p-a", failpoint="erase_before_manifest:1") == -signal.SIGKILL
    assert _erase_cli("s3://out/hf", s3, "--subject-id", "p-a") == 0
    hf_after = _objects(client, "hf/")
    data = pq.read_table(io.BytesIO(hf_after["hf/data/part-0.parquet"]))
    old_data = pq.read_table(io.BytesIO(hf_before["hf/data/part-0.parquet"])).to_pylist()
    assert data.to_pylist() == [old_data[1], old_data[3]] and data.schema == table.schema
    rows = sorted(pq.read_table(io.BytesIO(hf_after["hf/manifest/part-0.parquet"])).to_pylist(),
                  key=lambda r: r["shard_index"])
    assert [r["status"] for r in rows] == ["erased", "published", "erased", "published"]
    assert [r["output_uri"] for r in rows if r["output_uri"]] == [
        "s3://out/hf/data/part-0.parquet#row=0", "s3://out/hf/data/part-0.parquet#row=1"]
