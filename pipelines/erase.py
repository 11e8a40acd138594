"""Erasure and retention of a finished output: ``anonymize erase`` and ``anonymize purge``.

Both act through the manifests' lineage, change shards atomically (transforms/erasure.py), append
an audit entry (identifiers and counts, never data), rebuild the report so no gallery image or
figure of removed records remains, and verify the result.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from transforms.audit import append_entry, read_entries
from transforms.erasure import (
    ErasureError,
    ErasureRequest,
    ShardErasure,
    erase_shard,
    manifest_files,
    read_shard_rows,
    verify_shard,
)
from transforms.lease import OutputLease
from transforms.storage import DEFAULT_STORAGE, Storage, join, remove_if_exists


@dataclass
class ErasureResult:
    """What an erasure did: records erased now, found already erased, per shard, and the check."""

    erasure_id: str
    erased: int
    already_erased: int
    shards: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    audit_seq: int = -1

    @property
    def verified(self) -> bool:
        return not self.problems


def parse_request_file(lines: Iterable[str]) -> tuple[list[str], list[str]]:
    """Lines ``subject:ID`` or ``source:URI`` (a bare line is a source URI); ``#`` starts a comment."""
    sources: list[str] = []
    subjects: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("subject:"):
            subjects.append(line[len("subject:"):].strip())
        else:
            sources.append(line.removeprefix("source:").strip())
    return sources, subjects


def image_column_of(output: str, storage: Storage = DEFAULT_STORAGE) -> str:
    """The Parquet image column the output's runs used (from the audit log; default ``image``)."""
    for entry in reversed(read_entries(output, storage)):
        layout = entry.get("input_layout") or {}
        if layout.get("image_column"):
            return str(layout["image_column"])
    return "image"


def _rebuild_report(output: str, storage: Storage) -> None:
    """Remove the report's gallery (it shows outputs) and rebuild the report from what is left."""
    from expectations.report import build_report  # GX import only when needed

    fs, root = storage.filesystem(output)
    gallery = join(root, "report", "gallery")
    if fs.exists(gallery):
        fs.rm(gallery, recursive=True)
    if manifest_files(output, storage):
        build_report(output, storage)
    elif fs.exists(join(root, "report")):
        fs.rm(join(root, "report"), recursive=True)


def erase(output: str, source_uris: Iterable[str] = (), subject_ids: Iterable[str] = (),
          storage: Storage = DEFAULT_STORAGE, operator: str = "", rebuild_report: bool = True) -> ErasureResult:
    """Erase every record derived from the named sources or subjects from ``output``; idempotent.

    A shard whose data does not match its manifest is left unchanged and named in ``problems``.

    Raises:
        ValueError: nothing named.
        LeaseHeldError: a run (or another erasure or purge) is using the output.
    """
    request = ErasureRequest(frozenset(s for s in source_uris if s), frozenset(s for s in subject_ids if s))
    erasure_id = uuid.uuid4().hex
    with OutputLease(output, storage, erasure_id, purpose="erasure"):  # no run rewrites a shard meanwhile
        return _erase(output, request, erasure_id, storage, operator, rebuild_report)


def _erase(output: str, request: ErasureRequest, erasure_id: str, storage: Storage, operator: str,
           rebuild_report: bool) -> ErasureResult:
    image_column = image_column_of(output, storage)
    shards: list[ShardErasure] = []
    problems: list[str] = []
    for shard_id in manifest_files(output, storage):
        try:
            shards.append(erase_shard(output, shard_id, request, erasure_id, storage, image_column))
        except ErasureError as error:  # that shard is unchanged; the others go on
            problems.append(str(error))
    hashes = frozenset(h for s in shards for h in s.erased_output_sha256)
    problems += [p for shard_id in manifest_files(output, storage)
                 for p in verify_shard(output, shard_id, request, storage, image_column, hashes)]
    affected = [s for s in shards if s.erased or s.already_erased]
    erased = sum(s.erased for s in shards)
    if erased and rebuild_report:
        _rebuild_report(output, storage)
    result = ErasureResult(erasure_id, erased, sum(s.already_erased for s in shards),
                           [{k: v for k, v in asdict(s).items() if k != "erased_output_sha256"} for s in affected],
                           problems)
    entry = append_entry(output, "erasure", {
        "erasure_id": erasure_id, "legal_ground": "GDPR Art. 17 / Art. 21 request",
        "requested": {"source_uris": sorted(request.source_uris), "subject_ids": sorted(request.subject_ids)},
        "records_erased": result.erased, "records_already_erased": result.already_erased,
        "shards": result.shards, "verified": result.verified, "problems": problems,
    }, storage, operator)
    result.audit_seq = int(entry["seq"])
    return result


def _expired_runs(output: str, storage: Storage, now: datetime.datetime,
                  older_than_days: float | None) -> dict[str, str]:
    """run id -> why it is due (retention passed, or older than the cutoff), from the audit log."""
    due: dict[str, str] = {}
    for entry in read_entries(output, storage):
        if entry.get("kind") != "run" or not entry.get("run_id"):
            continue
        finished = datetime.datetime.fromisoformat(str(entry.get("finished_at") or entry["time"]))
        if older_than_days is not None and finished <= now - datetime.timedelta(days=older_than_days):
            due[entry["run_id"]] = f"older than {older_than_days:g} days (finished {finished.isoformat()})"
        elif entry.get("retention_until") and datetime.datetime.fromisoformat(entry["retention_until"]) <= now:
            due[entry["run_id"]] = f"retention period ended {entry['retention_until']}"
    return due


def purge(output: str, storage: Storage = DEFAULT_STORAGE, older_than_days: float | None = None, operator: str = "",
          now: datetime.datetime | None = None) -> dict[str, Any]:
    """Remove the shards (data, manifest, validation results) of runs whose retention has passed.

    A shard goes when every row of its manifest was committed by a due run; its data goes before
    its manifest, so an interrupted purge is finished by running it again.

    Returns:
        What was removed: runs, shards, records, files; also appended to the audit log.

    Raises:
        LeaseHeldError: a run (or an erasure) is using the output.
    """
    with OutputLease(output, storage, uuid.uuid4().hex, purpose="purge"):
        return _purge(output, storage, older_than_days, operator, now or datetime.datetime.now(datetime.UTC))


def _purge(output: str, storage: Storage, older_than_days: float | None, operator: str,
           now: datetime.datetime) -> dict[str, Any]:
    due = _expired_runs(output, storage, now, older_than_days)
    fs, root = storage.filesystem(output)
    removed_shards: list[str] = []
    records = files = 0
    for shard_id, path in manifest_files(output, storage).items():
        rows = read_shard_rows(output, shard_id, storage)
        if not rows or not all(row["run_id"] in due for row in rows):
            continue
        for uri in sorted({str(r["output_uri"]).split("#", 1)[0] for r in rows if r.get("output_uri")}):
            files += remove_if_exists(fs, storage.filesystem(uri)[1])
        for suffix in (".json", ".html"):
            remove_if_exists(fs, join(root, "report", "validations", f"{shard_id}{suffix}"))
        remove_if_exists(fs, path)
        removed_shards.append(shard_id)
        records += len(rows)
    if removed_shards:
        _rebuild_report(output, storage)
    report = {"runs_due": due, "shards_removed": removed_shards, "records_removed": records,
              "data_files_removed": files, "shards_left": len(manifest_files(output, storage))}
    entry = append_entry(output, "purge", report | {"older_than_days": older_than_days}, storage, operator)
    return report | {"audit_seq": entry["seq"]}
