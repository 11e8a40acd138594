"""The append-only audit log under ``<output>/audit/``: a record of processing (GDPR Article 30)
for every run, erasure and purge, as a hash chain.

Each entry is one JSON object, ``audit/<seq:012d>.json``, written once with an exclusive create
(``O_EXCL``-style link on local disk, ``If-None-Match: *`` on S3) and never overwritten. An entry
carries ``prev_sha256`` (the SHA-256 of the previous entry's bytes; 64 zeros for the first) and
``entry_sha256`` (of its own canonical body). Two writers that race for the same sequence number
cannot both win: the loser re-reads the head and appends after it, so the chain cannot fork.
``verify_chain`` finds edited, removed, re-ordered or inserted entries; editing the newest entry
and recomputing its own hash is only detectable against a head hash kept elsewhere, which is why
``anonymize audit verify`` prints the head hash.
"""

from __future__ import annotations

import datetime
import getpass
import hashlib
import json
import posixpath
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem

from transforms.storage import DEFAULT_STORAGE, Storage, create_exclusive, join

AUDIT_FOLDER = "audit"
GENESIS = "0" * 64
ENTRY_DIGITS = 12


class AuditError(RuntimeError):
    """The audit log could not be appended to."""


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry is hashed and stored as: sorted keys, no spaces, UTF-8."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_path(root: str, seq: int) -> str:
    return join(root, AUDIT_FOLDER, f"{seq:0{ENTRY_DIGITS}d}.json")


def operator_name(configured: str = "") -> str:
    """Who runs the command: the configured operator, else the operating-system user."""
    if configured:
        return configured
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def code_version() -> dict[str, str]:
    """The installed distribution's version and, in a git checkout, the commit (dirty marked)."""
    try:
        version = metadata.version("dataset-anonymizer")
    except metadata.PackageNotFoundError:
        version = "not installed"
    source = Path(__file__).resolve().parents[1]
    commit = ""
    if (source / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=10, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10, check=True).stdout.strip()
            commit += "+dirty" if dirty else ""
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return {"package": "dataset-anonymizer", "version": version, "git_commit": commit}


def _sequence_numbers(fs: AbstractFileSystem, root: str) -> list[tuple[int, str]]:
    folder = join(root, AUDIT_FOLDER)
    if not fs.exists(folder):
        return []
    found = []
    for path in fs.ls(folder, detail=False):
        name = posixpath.basename(str(path))
        stem = name.removesuffix(".json")
        if name.endswith(".json") and stem.isdigit():
            found.append((int(stem), str(path)))
    return sorted(found)


def append_entry(output: str, kind: str, payload: Mapping[str, Any], storage: Storage = DEFAULT_STORAGE,
                 operator: str = "", attempts: int = 50) -> dict[str, Any]:
    """Append one entry (``kind``: ``run_started``, ``run``, ``erasure``, ``purge``...) to the log.

    Returns:
        The entry as written, with its ``seq``, ``prev_sha256`` and ``entry_sha256``.

    Raises:
        AuditError: no free sequence number after ``attempts`` tries (heavy contention).
    """
    fs, root = storage.filesystem(output)
    for _ in range(attempts):
        existing = _sequence_numbers(fs, root)
        seq = existing[-1][0] + 1 if existing else 0
        previous = sha256(bytes(fs.cat_file(existing[-1][1]))) if existing else GENESIS
        entry: dict[str, Any] = {
            **payload,
            "seq": seq, "kind": kind, "prev_sha256": previous,
            "time": datetime.datetime.now(datetime.UTC).isoformat(),
            "operator": operator_name(operator),
        }
        entry["entry_sha256"] = sha256(canonical(entry))
        if create_exclusive(fs, entry_path(root, seq), canonical(entry) + b"\n"):
            return entry
        fs.invalidate_cache()
    raise AuditError(f"audit: no free entry after {attempts} tries at {output}/{AUDIT_FOLDER}")


@dataclass(frozen=True)
class ChainReport:
    """The result of checking the audit log."""

    entries: int
    head_sha256: str
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_entries(output: str, storage: Storage = DEFAULT_STORAGE) -> list[dict[str, Any]]:
    """Every readable entry of the log, in sequence order (no checks; see ``verify_chain``)."""
    fs, root = storage.filesystem(output)
    entries = []
    for _, path in _sequence_numbers(fs, root):
        try:
            entries.append(json.loads(bytes(fs.cat_file(path))))
        except ValueError:
            continue
    return entries


def verify_chain(output: str, storage: Storage = DEFAULT_STORAGE) -> ChainReport:
    """Check every entry: numbered 0..n-1 without gaps, its own hash, and its link to the previous one."""
    fs, root = storage.filesystem(output)
    problems: list[str] = []
    previous = GENESIS
    found = _sequence_numbers(fs, root)
    for expected, (seq, path) in enumerate(found):
        if seq != expected:
            problems.append(f"entry {expected}: missing (next is {seq})")
        data = bytes(fs.cat_file(path))
        try:
            entry = json.loads(data)
        except ValueError:
            problems.append(f"entry {seq}: not valid JSON")
            previous = sha256(data)
            continue
        body = {k: v for k, v in entry.items() if k != "entry_sha256"}
        if entry.get("seq") != seq:
            problems.append(f"entry {seq}: says it is entry {entry.get('seq')!r}")
        if entry.get("entry_sha256") != sha256(canonical(body)):
            problems.append(f"entry {seq}: content does not match its entry_sha256 (edited)")
        if entry.get("prev_sha256") != previous:
            problems.append(f"entry {seq}: prev_sha256 does not match entry {seq - 1} (an earlier entry was "
                            "edited, removed or replaced)")
        previous = sha256(data)
    return ChainReport(len(found), previous, tuple(problems))
