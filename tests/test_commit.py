"""transforms/commit.py: a shard is committed whole (outputs, then the manifest) or not at all,
never with a lost or repeated record, never without the lease, and a gate can refuse it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.unit_data import commit, jpeg_bytes, record
from transforms.commit import (
    CommitShard,
    GateVerdict,
    LostRecordsError,
    check_complete,
    output_facts,
    planned_outputs,
    withdraw_shard,
)
from transforms.lease import LeaseLostError
from transforms.manifest import RunInfo, committed_shards
from transforms.records import ShardSpec
from transforms.staging import STAGING_FOLDER

SPEC = ShardSpec("images-000000", "images", ("/in/a.jpg", "/in/b.jpg", "/in/c.jpg"), ("a.jpg", "b.jpg", "c.jpg"),
                 "data")


def _records() -> list[Any]:
    return [record(SPEC.shard_id, i, rel, jpeg_bytes(30 * (i + 1))) for i, rel in enumerate(SPEC.relative_paths)]


def _rows(output: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(output / "manifest" / f"{SPEC.shard_id}.parquet").to_pylist()
    return {row["relative_path"]: row for row in rows}


def test_check_complete_refuses_a_lost_or_repeated_record() -> None:
    records = _records()
    check_complete("s", records, 3)
    with pytest.raises(LostRecordsError, match="3 records read but 2 arrived"):
        check_complete("s", records[:2], 3)
    with pytest.raises(LostRecordsError, match="2 distinct"):
        check_complete("s", [records[0], records[0], records[1]], 3)


def test_output_facts() -> None:
    assert output_facts(jpeg_bytes(50, (24, 16))) == {"output_decodes": True, "output_width": 24, "output_height": 16}
    assert output_facts(b"not an image")["output_decodes"] is False


def test_commit_writes_published_outputs_then_the_manifest(tmp_path: Path) -> None:
    records = _records()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b.jpg").write_bytes(b"left by a crashed attempt")
    records[1] = records[1].quarantine("verify:residual_faces")
    [result] = commit(str(tmp_path), SPEC, records)
    assert (result.inputs, result.published, result.quarantined) == (3, 2, 1)
    assert (tmp_path / "data" / "a.jpg").read_bytes() == records[0].data
    assert not (tmp_path / "data" / "b.jpg").exists()  # data/ holds exactly the published records
    rows = _rows(tmp_path)
    assert rows["a.jpg"]["status"] == "published" and rows["a.jpg"]["output_uri"] == str(tmp_path / "data" / "a.jpg")
    assert rows["b.jpg"]["status"] == "quarantined" and rows["b.jpg"]["output_uri"] is None
    assert rows["b.jpg"]["reason"] == "verify:residual_faces"
    assert committed_shards(str(tmp_path)) == {SPEC.shard_id}
    assert not (tmp_path / STAGING_FOLDER / "run-1" / SPEC.shard_id).exists()  # staging removed after


def test_a_gate_refusal_quarantines_the_whole_shard(tmp_path: Path) -> None:
    seen: list[Sequence[Mapping[str, Any]]] = []

    def gate(spec: ShardSpec, rows: Sequence[Mapping[str, Any]]) -> GateVerdict:
        seen.append(rows)
        return GateVerdict(("too_many_faces",))

    [result] = commit(str(tmp_path), SPEC, _records(), gate=gate)
    assert result.published == 0 and result.quarantined == 3
    assert {row["reason"] for row in _rows(tmp_path).values()} == {"gate:too_many_faces"}
    assert not any((tmp_path / "data").glob("*.jpg"))
    assert all(row["output_decodes"] and row["output_width"] == 24 for row in seen[0])  # facts for the gate


def test_no_commit_without_the_lease(tmp_path: Path) -> None:
    records = _records()
    element = (SPEC.shard_id, {"records": records, "read_count": [3]})
    with pytest.raises(LeaseLostError, match="no longer holds the lease"):
        list(CommitShard({SPEC.shard_id: SPEC}, str(tmp_path), RunInfo("run-1", "c", {})).process(element))
    assert not (tmp_path / "manifest").exists()


def test_withdraw_removes_outputs_no_planned_shard_writes(tmp_path: Path) -> None:
    commit(str(tmp_path), SPEC, _records())
    kept_spec = ShardSpec("images-000000", "images", ("/in/a.jpg",), ("a.jpg",), "data")
    keep = planned_outputs(str(tmp_path), [kept_spec])
    assert keep == {str(tmp_path / "data" / "a.jpg")}
    assert withdraw_shard(str(tmp_path), SPEC.shard_id, keep) == 2
    assert (tmp_path / "data" / "a.jpg").exists()
    assert not (tmp_path / "data" / "b.jpg").exists() and not (tmp_path / "data" / "c.jpg").exists()
    assert committed_shards(str(tmp_path)) == set()  # the manifest goes too
