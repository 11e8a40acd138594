"""The shard gate: the per-shard suite, run by ``CommitShard`` before anything of the shard is written.

The validation result is kept as ``<output>/report/validations/<shard_id>.json`` (written
atomically, before the shard's manifest, so every committed shard has one).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from expectations.suites import GateThresholds, expected_rows, shard_expectations, shard_frame
from expectations.validate import failed_names, validate_frame
from transforms.commit import GateVerdict
from transforms.records import ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, write_atomic

VALIDATIONS_FOLDER = "validations"
RUN_VALIDATION = "_run"


def validation_path(root: str, name: str) -> str:
    """Where the validation result ``name`` (a shard id, or ``_run``) is kept under an output root."""
    return join(root, "report", VALIDATIONS_FOLDER, f"{name}.json")


def write_validation(record: Mapping[str, Any], output: str, name: str, storage: Storage = DEFAULT_STORAGE) -> str:
    """Write one validation record atomically; returns its path."""
    fs, root = storage.filesystem(output)
    path = validation_path(root, name)
    write_atomic(fs, path, json.dumps(record, indent=1, sort_keys=True, default=str).encode())
    return path


def read_validations(output: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, dict[str, Any]]:
    """Every kept validation record of an output, by name (shard ids and ``_run``)."""
    fs, root = storage.filesystem(output)
    folder = join(root, "report", VALIDATIONS_FOLDER)
    if not fs.exists(folder):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(fs.ls(folder, detail=False)):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith("."):
            found[name[: -len(".json")]] = json.loads(fs.cat_file(path))
    return found


def gate_shard(spec: ShardSpec, rows: Sequence[Mapping[str, Any]], thresholds: GateThresholds,
               run_id: str = "") -> dict[str, Any]:
    """Validate one shard's provisional manifest rows; returns the validation record to keep."""
    started = time.monotonic()
    expected = expected_rows(spec, rows)
    meta = {"level": "shard", "shard_id": spec.shard_id, "run_id": run_id, "thresholds": thresholds.as_dict()}
    result = validate_frame(f"shard.{spec.shard_id}", shard_frame(rows), shard_expectations(thresholds, expected), meta)
    failed = failed_names(result)
    return {
        "level": "shard",
        "name": spec.shard_id,
        "run_id": run_id,
        "passed": not failed,
        "failed": failed,
        "thresholds": thresholds.as_dict(),
        "records": len(rows),
        "expected_records": expected,
        "validated_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "seconds": round(time.monotonic() - started, 3),
        "gx_result": result,
    }


class GxShardGate:
    """A ``ShardGate`` that runs the per-shard suite and keeps its result under ``report/validations``.

    Picklable (it holds only settings), so Beam can ship it with ``CommitShard``.
    """

    def __init__(self, thresholds: GateThresholds, output: str, run_id: str = "",
                 storage: Storage = DEFAULT_STORAGE) -> None:
        if not isinstance(thresholds, GateThresholds):
            raise ValueError(f"thresholds: expected GateThresholds, got {type(thresholds).__name__}")
        if not output:
            raise ValueError("output: required")
        self.thresholds = thresholds
        self.output = output
        self.run_id = run_id
        self.storage = storage

    def __call__(self, spec: ShardSpec, rows: Sequence[Mapping[str, Any]]) -> GateVerdict:
        record = gate_shard(spec, rows, self.thresholds, self.run_id)
        write_validation(record, self.output, spec.shard_id, self.storage)
        return GateVerdict(failed=tuple(record["failed"]))
