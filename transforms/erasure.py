"""Erasure (GDPR Article 17) of records from a finished output, through the manifests' lineage.

A record is named by its source URI (or the tar/Parquet file it came from) or its subject id.
Per affected shard: the data shard is rewritten without the erased records with the same writers
as a normal commit (``transforms.commit.WRITERS``: one atomic put or rename), image-folder files
are removed, then the shard's manifest is rewritten atomically with the rows marked ``erased``
(identifiers kept as lineage, every derived figure cleared). The manifest goes last, so a crash
leaves the old or the new shard, and a re-run finishes the job: a Parquet shard already rewritten
is recognised by its rows' hashes, a tar shard is filtered again (a no-op), removed files stay removed.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transforms.commit import WRITERS
from transforms.exclusions import source_matches
from transforms.failpoints import failpoint
from transforms.io_parquet import read_parquet_shard
from transforms.io_webdataset import read_tar_shard
from transforms.manifest import MANIFEST_SCHEMA, read_shard_plan, read_shard_rows, write_manifest
from transforms.records import ERASED, PUBLISHED, Record, ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, remove_if_exists
from transforms.thumbnails import thumbnail_name

# Manifest columns an erased row keeps: lineage and the run that made it. Everything else is cleared.
KEPT_COLUMNS = ("record_id", "shard_id", "shard_index", "source_uri", "subject_id", "relative_path",
                "detector", "run_id", "config_sha256", "processed_at")


class ErasureError(RuntimeError):
    """A shard's data does not match its manifest; nothing of it was changed."""


@dataclass(frozen=True)
class ErasureRequest:
    """What to erase: source URIs (a record, or a whole tar/Parquet source) and subject ids."""

    source_uris: frozenset[str] = frozenset()
    subject_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.source_uris and not self.subject_ids:
            raise ValueError("erase: name at least one source URI or subject id")

    def matches(self, row: Mapping[str, Any]) -> bool:
        if source_matches(str(row.get("source_uri") or ""), self.source_uris):
            return True
        return bool(row.get("subject_id")) and row.get("subject_id") in self.subject_ids


@dataclass
class ShardErasure:
    """What erasure did to one shard."""

    shard_id: str
    erased: int = 0
    already_erased: int = 0
    data_rewritten: str = ""
    files_removed: int = 0
    erased_output_sha256: set[str] = field(default_factory=set)


def manifest_files(output: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, str]:
    """shard id -> manifest path, for every committed shard."""
    fs, root = storage.filesystem(output)
    folder = join(root, "manifest")
    if not fs.exists(folder):
        return {}
    return {posixpath.basename(p).removesuffix(".parquet"): p
            for p in sorted(fs.ls(folder, detail=False)) if str(p).endswith(".parquet")}


def shard_format(rows: Sequence[Mapping[str, Any]]) -> str:
    """The output layout of a shard, from its published rows' output URIs."""
    uris = [str(r["output_uri"]) for r in rows if r.get("output_uri")]
    if not uris:
        return ""
    if "#row=" in uris[0]:
        return "parquet"
    return "webdataset" if "#" in uris[0] else "images"


def _data_spec(output: str, storage: Storage, shard_id: str, fmt: str, data_uri: str,
               image_column: str) -> ShardSpec:
    """A spec whose input is the shard's output file and whose output is that same file."""
    fs, root = storage.filesystem(output)
    _, data_path = storage.filesystem(data_uri)
    relative = posixpath.relpath(data_path, root)
    return ShardSpec(shard_id, fmt, (data_uri,), (relative,), "", image_column=image_column)


def _published(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted((r for r in rows if r["status"] == PUBLISHED), key=lambda r: r["shard_index"])


def _rewrite_tar(spec: ShardSpec, output: str, storage: Storage, drop_keys: set[str]) -> dict[str, str]:
    kept = [r for r in read_tar_shard(spec, storage) if r.source_uri.split("#", 1)[1] not in drop_keys]
    if any(r.is_quarantined for r in kept):
        raise ErasureError(f"shard {spec.shard_id}: its data file does not read whole; not rewritten")
    return WRITERS["webdataset"](spec, kept, output, storage, lambda r: r.data)


def _rewrite_parquet(spec: ShardSpec, output: str, storage: Storage, old: Sequence[Mapping[str, Any]],
                     keep: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], bool]:
    """Rewrite the Parquet shard keeping the rows ``keep``; returns record id -> new URI, and
    whether the file was written (False: it already held exactly ``keep``, an interrupted erasure)."""
    records = list(read_parquet_shard(spec, storage))
    hashes = [hashlib.sha256(r.data).hexdigest() for r in records]
    if hashes == [r["output_sha256"] for r in keep]:
        return {row["record_id"]: f"{spec.input_uris[0]}#row={j}" for j, row in enumerate(keep)}, False
    if hashes != [r["output_sha256"] for r in old]:
        raise ErasureError(f"shard {spec.shard_id}: the rows of {spec.input_uris[0]} match neither its "
                           "manifest nor the manifest after erasure; not changed")
    kept_ids = {row["record_id"] for row in keep}
    selected: list[Record] = [rec.replace(record_id=row["record_id"]) for rec, row in zip(records, old, strict=True)
                              if row["record_id"] in kept_ids]
    return WRITERS["parquet"](spec, selected, output, storage, lambda r: r.data), True


def erased_row(row: Mapping[str, Any], erasure_id: str) -> dict[str, Any]:
    """A manifest row after erasure: lineage kept, every output and derived figure cleared."""
    cleared: dict[str, Any] = {name: None for name in MANIFEST_SCHEMA.names}
    cleared.update({name: row.get(name) for name in KEPT_COLUMNS})
    cleared.update({"status": ERASED, "reason": f"erasure:{erasure_id}", "faces": [], "face_count": 0,
                    "metadata_removed": [], "metadata_remaining": []})
    return cleared


def erase_shard(output: str, shard_id: str, request: ErasureRequest, erasure_id: str,
                storage: Storage = DEFAULT_STORAGE, image_column: str = "image",
                mark: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None) -> ShardErasure:
    """Erase the records of one shard that ``request`` names; idempotent.

    ``mark`` makes a named row's manifest row after its output is gone (default ``erased_row``);
    ``anonymize review`` passes one that quarantines the row instead.

    Raises:
        ErasureError: the shard's data does not match its manifest (nothing changed).
    """
    rows = read_shard_rows(output, shard_id, storage)
    result = ShardErasure(shard_id)
    targets = [r for r in rows if request.matches(r) and r["status"] != ERASED]
    result.already_erased = sum(1 for r in rows if request.matches(r) and r["status"] == ERASED)
    if not targets:
        return result
    target_ids = {r["record_id"] for r in targets}
    published = _published(rows)
    erased_published = [r for r in published if r["record_id"] in target_ids]
    new_uris: dict[str, str] = {}
    fmt = shard_format(rows)
    result.erased_output_sha256 = {str(r["output_sha256"]) for r in erased_published if r.get("output_sha256")}
    if erased_published:
        data_uri = str(erased_published[0]["output_uri"]).split("#", 1)[0]
        fs, _ = storage.filesystem(output)
        if fmt == "images":
            for row in erased_published:
                _, path = storage.filesystem(str(row["output_uri"]))
                result.files_removed += remove_if_exists(fs, path)
        elif fmt == "webdataset":
            spec = _data_spec(output, storage, shard_id, fmt, data_uri, image_column)
            _rewrite_tar(spec, output, storage, {str(r["output_uri"]).split("#", 1)[1] for r in erased_published})
            result.data_rewritten = data_uri
        else:
            spec = _data_spec(output, storage, shard_id, fmt, data_uri, image_column)
            keep = [r for r in published if r["record_id"] not in target_ids]
            new_uris, written = _rewrite_parquet(spec, output, storage, published, keep)
            result.data_rewritten = data_uri if written else ""
    # An image-folder target that is not published (excluded, quarantined) has no output; a file at
    # its output path can only be what an older version's crashed commit left there: remove it.
    fs, root = storage.filesystem(output)
    for row in targets:
        if row["status"] != PUBLISHED and row.get("relative_path") and "#" not in str(row.get("source_uri") or ""):
            result.files_removed += remove_if_exists(fs, join(root, "data", str(row["relative_path"])))
        remove_if_exists(fs, join(root, "report", thumbnail_name(shard_id, int(row["shard_index"]))))
    failpoint("erase_before_manifest")
    updated = []
    for row in rows:
        if row["record_id"] in target_ids:
            updated.append(mark(row) if mark is not None else erased_row(row, erasure_id))
        elif row["record_id"] in new_uris:
            updated.append(dict(row) | {"output_uri": new_uris[row["record_id"]]})
        else:
            updated.append(dict(row))
    write_manifest(updated, output, shard_id, storage, read_shard_plan(output, shard_id, storage))
    result.erased = len(targets)
    return result


def verify_shard(output: str, shard_id: str, request: ErasureRequest, storage: Storage = DEFAULT_STORAGE,
                 image_column: str = "image", erased_hashes: frozenset[str] = frozenset(),
                 removed_status: str = ERASED) -> list[str]:
    """What of ``request`` is still in the shard: manifest rows not ``removed_status`` (erased, or
    quarantined by a review), outputs still present."""
    rows = read_shard_rows(output, shard_id, storage)
    problems = [f"{shard_id}: record {r['record_id']} is still {r['status']}"
                for r in rows if request.matches(r) and r["status"] != removed_status]
    published = _published(rows)
    fmt = shard_format(rows)
    fs, _ = storage.filesystem(output)
    if fmt == "images":
        for row in rows:
            if row["status"] == removed_status and row.get("relative_path"):
                path = join(storage.filesystem(output)[1], "data", str(row["relative_path"]))
                if fs.exists(path):
                    problems.append(f"{shard_id}: erased output {row['relative_path']} still exists")
        return problems
    if not published:
        return problems
    data_uri = str(published[0]["output_uri"]).split("#", 1)[0]
    spec = _data_spec(output, storage, shard_id, fmt, data_uri, image_column)
    records = list(read_tar_shard(spec, storage) if fmt == "webdataset" else read_parquet_shard(spec, storage))
    hashes = [hashlib.sha256(r.data).hexdigest() for r in records]
    if hashes != [r["output_sha256"] for r in published]:
        problems.append(f"{shard_id}: data file {data_uri} does not hold exactly the published rows")
    kept_hashes = {r["output_sha256"] for r in published}
    leftover = [h for h in hashes if h in erased_hashes and h not in kept_hashes]
    if leftover:
        problems.append(f"{shard_id}: {len(leftover)} erased output(s) still in {data_uri}")
    return problems
