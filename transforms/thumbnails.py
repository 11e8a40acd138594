"""Thumbnails of records withheld only by a shard gate, for the report's "Withheld images" section.

A record whose shard fails its Great Expectations gate *only* because too many of the shard's
other records were quarantined (``quarantine_share_within_bound``) passed every check of its own:
it was decoded, detected, anonymized and verified, so its staged output is anonymized. (A shard
that fails any other expectation, e.g. re-identification above chance or metadata left, may hold
outputs that are not anonymized: none of its records gets a thumbnail.) The commit drops those
bytes; before it does, ``CommitShard`` keeps a small downscaled copy of that *anonymized
output* at ``<output>/report/withheld/<shard_id>/<index>.jpg`` (written atomically, re-encoded from
pixels, so no metadata). Nothing else is ever kept there: a record quarantined before or at
verification has no anonymized output (``Record.quarantine`` drops its bytes) and gets none, and
``prune_thumbnails`` (run by every report build, so after each erasure and purge) removes any file
there that is not a gate-withheld record's. An original is never shown.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from fsspec import AbstractFileSystem
from PIL import Image

from transforms.storage import join, remove_if_exists, write_atomic

FOLDER = "withheld"  # under <output>/report/
SIDE = 160
GATE_PREFIX = "gate:"
# The shard expectations whose failure says nothing against a verified record's own output.
SHOWABLE_GATE_FAILURES = frozenset({"quarantine_share_within_bound"})


def thumbnail_allowed(failed: Iterable[str]) -> bool:
    """Whether a shard that failed the expectations ``failed`` may keep thumbnails of its verified records."""
    names = set(failed)
    return bool(names) and names <= SHOWABLE_GATE_FAILURES


def thumbnail_name(shard_id: str, index: int) -> str:
    """The thumbnail's path relative to the report folder (the index page's link)."""
    return f"{FOLDER}/{shard_id}/{index:09d}.jpg"


def gate_withheld(row: Mapping[str, Any]) -> bool:
    """Whether a manifest row was withheld only by its shard's gate, for a failure that allows a
    thumbnail (``thumbnail_allowed``): its output passed verification."""
    reason = str(row.get("reason") or "")
    return (row.get("status") == "quarantined" and reason.startswith(GATE_PREFIX)
            and thumbnail_allowed(reason[len(GATE_PREFIX):].split(",")))


def make_thumbnail(data: bytes) -> bytes | None:
    """A JPEG of at most ``SIDE`` px of an anonymized output, from its pixels only; None if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    image.thumbnail((SIDE, SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def write_thumbnail(fs: AbstractFileSystem, root: str, shard_id: str, index: int, anonymized: bytes) -> bool:
    """Keep the thumbnail of a gate-withheld record's anonymized output; returns whether one was written."""
    thumbnail = make_thumbnail(anonymized)
    if thumbnail is None:
        return False
    write_atomic(fs, join(root, "report", thumbnail_name(shard_id, index)), thumbnail)
    return True


def remove_shard_thumbnails(fs: AbstractFileSystem, root: str, shard_id: str) -> None:
    """Remove a shard's thumbnails (before it is committed again, or withdrawn)."""
    folder = join(root, "report", FOLDER, shard_id)
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


def prune_thumbnails(fs: AbstractFileSystem, root: str, rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Remove every file under ``report/withheld/`` that is not the thumbnail of a gate-withheld row
    of ``rows`` (the manifest); returns the names (``thumbnail_name``) of those that are left."""
    wanted = {thumbnail_name(str(row["shard_id"]), int(row["shard_index"])) for row in rows if gate_withheld(row)}
    folder = join(root, "report", FOLDER)
    if not fs.exists(folder):
        return set()
    kept: set[str] = set()
    prefix = join(root, "report") + "/"
    for path in fs.find(folder):
        path = str(path)
        name = path[len(prefix):] if path.startswith(prefix) else path
        if name in wanted:
            kept.add(name)
        else:
            remove_if_exists(fs, path)
    return kept
