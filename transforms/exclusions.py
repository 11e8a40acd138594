"""Exclusions (objections, withdrawn consent): records that are never decoded or processed.

Applied right after a shard is read: each record gets its subject id (``subject_field``: a sidecar
or column name, or ``json:key`` inside one), and a record whose source URI or subject id is on the
exclusion list leaves this stage as ``excluded`` with no bytes and no sidecars, so no later stage
can decode, detect, store or publish anything of it. It still gets its manifest row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from transforms.records import Record
from transforms.storage import DEFAULT_STORAGE, Storage


def split_identifiers(text: str) -> list[str]:
    """Identifiers of an inline list: separated by commas or newlines, blanks dropped."""
    return [part.strip() for line in str(text or "").splitlines() for part in line.split(",") if part.strip()]


def read_identifier_file(uri: str, storage: Storage = DEFAULT_STORAGE) -> list[str]:
    """Identifiers in a text file, one a line (blank lines and ``#`` comments skipped).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    with storage.open(uri, "r", encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8").strip()
    return str(value).strip()


def read_subject(extras: Iterable[tuple[str, Any]], subject_field: str) -> str:
    """The subject id of a record from its sidecars or columns (empty when absent).

    Args:
        extras: ``Record.extras``: WebDataset member extensions with bytes, or Parquet column values.
        subject_field: ``"sid"`` or a column name (the value is the id), or ``"json:key"`` (the
            ``json`` sidecar or column holds JSON; ``key`` may be a dotted path).
    """
    if not subject_field:
        return ""
    name, _, path = subject_field.partition(":")
    values = dict(extras)
    if name not in values or values[name] is None:
        return ""
    value = values[name]
    if not path:
        return _text(value)
    try:
        node: Any = value if isinstance(value, Mapping) else json.loads(_text(value))
    except (UnicodeDecodeError, ValueError):
        return ""
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return ""
        node = node[key]
    return "" if node is None or isinstance(node, Mapping | list) else _text(node)


def source_matches(source_uri: str, listed: frozenset[str]) -> str:
    """The listed URI that names ``source_uri``: itself, or the tar/Parquet file it is a record of."""
    if source_uri in listed:
        return source_uri
    container = source_uri.split("#", 1)[0]
    return container if "#" in source_uri and container in listed else ""


@dataclass(frozen=True)
class Exclusions:
    """The exclusion list of a job and where subject ids are read from."""

    source_uris: frozenset[str] = frozenset()
    subject_ids: frozenset[str] = frozenset()
    subject_field: str = ""

    def __post_init__(self) -> None:
        if self.subject_ids and not self.subject_field:
            raise ValueError("exclude_subject_ids: needs subject_field (where a record's subject id is)")

    @property
    def active(self) -> bool:
        return bool(self.source_uris or self.subject_ids or self.subject_field)

    def reason(self, record: Record) -> str:
        """``exclusion:source`` or ``exclusion:subject`` when the record is excluded, else empty."""
        if source_matches(record.source_uri, self.source_uris):
            return "exclusion:source"
        if record.subject_id and record.subject_id in self.subject_ids:
            return "exclusion:subject"
        return ""

    def apply(self, record: Record) -> Record:
        """The record with its subject id; excluded (no bytes, no sidecars) when it is listed."""
        subject = read_subject(record.extras, self.subject_field)
        record = record.replace(subject_id=subject) if subject else record
        reason = self.reason(record)
        return record.exclude(reason) if reason else record

    def summary(self) -> dict[str, Any]:
        """Counts for the record of processing (never the identifiers themselves)."""
        return {"source_uris": len(self.source_uris), "subject_ids": len(self.subject_ids),
                "subject_field": self.subject_field}
