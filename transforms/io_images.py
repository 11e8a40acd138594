"""Image-folder input and output: a folder or glob of image files, cut into fixed-size shards.

Shards are the sorted file list cut every ``shard_size`` files, so names are deterministic for a
given input listing. Outputs keep each file's path relative to the input root under ``data/``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Callable, Iterator, Sequence

from transforms.failpoints import failpoint
from transforms.records import Record, ShardSpec
from transforms.storage import (
    DEFAULT_STORAGE,
    Storage,
    is_local,
    join,
    path_kind,
    remove_if_exists,
    to_uri,
    write_atomic,
)

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif",
    ".avif",
})


def record_id_for(source_uri: str) -> str:
    """A stable record id derived from the source URI."""
    return hashlib.sha256(source_uri.encode()).hexdigest()[:24]


def _root_of(path: str) -> str:
    magic = min((path.find(c) for c in "*?[" if c in path), default=-1)
    if magic == -1:
        return path.rstrip("/")
    return posixpath.dirname(path[:magic])


def _local_tree(path: str) -> list[str]:
    """Every file under a local folder, symbolic links not followed: a linked file is listed (its
    read quarantines it), and so is a linked folder (not entered)."""
    found: list[str] = []
    for folder, subfolders, names in os.walk(path):
        found += [join(folder, name) for name in subfolders if os.path.islink(join(folder, name))]
        found += [join(folder, name) for name in names]
    return found


def _symlink_reason(path: str) -> str:
    """``read:symlinked_folder`` or ``read:symlink`` for a local symbolic link, else empty."""
    if not os.path.islink(path):
        return ""
    return "read:symlinked_folder" if os.path.isdir(path) else "read:symlink"


def plan_image_shards(input_uri: str, shard_size: int, storage: Storage = DEFAULT_STORAGE) -> list[ShardSpec]:
    """List the input images and cut them into shards.

    Raises:
        FileNotFoundError: the input matches no image file.
    """
    fs, path = storage.filesystem(input_uri)
    kind = "glob" if any(c in path for c in "*?[") else path_kind(fs, path, input_uri)
    if kind == "glob":
        candidates = [p for p in fs.glob(path) if fs.isfile(p)]
    elif kind == "directory":
        candidates = _local_tree(path) if is_local(fs) else list(fs.find(path))
    elif kind == "file":
        candidates = [path]
    else:
        raise FileNotFoundError(f"input: nothing found at {input_uri}")
    root = posixpath.dirname(path) if kind == "file" else _root_of(path)
    linked = {p for p in candidates if is_local(fs) and _symlink_reason(p) == "read:symlinked_folder"}
    files = sorted(p for p in candidates
                   if posixpath.splitext(p)[1].lower() in IMAGE_EXTENSIONS or p in linked)
    if not files:
        raise FileNotFoundError(f"input: no image files found at {input_uri}")
    shards = []
    for start in range(0, len(files), shard_size):
        chunk = files[start:start + shard_size]
        shards.append(ShardSpec(
            shard_id=f"images-{start // shard_size:06d}",
            format="images",
            input_uris=tuple(to_uri(fs, p) for p in chunk),
            relative_paths=tuple(posixpath.relpath(p, root) for p in chunk),
            output_name="data",
        ))
    return shards


def read_image_shard(spec: ShardSpec, storage: Storage = DEFAULT_STORAGE) -> Iterator[Record]:
    """Yield one record per file of the shard, bytes read through fsspec."""
    for index, (uri, rel) in enumerate(zip(spec.input_uris, spec.relative_paths, strict=True)):
        fs, path = storage.filesystem(uri)
        link = _symlink_reason(path) if is_local(fs) else ""
        if link:  # never followed: it may point outside the input, or at another input twice
            yield Record(spec.shard_id, index, record_id_for(uri), uri, rel, "", b"").quarantine(link)
            continue
        try:
            data = fs.cat_file(path)
        except (OSError, FileNotFoundError) as error:
            record = Record(spec.shard_id, index, record_id_for(uri), uri, rel, "", b"")
            yield record.quarantine(f"read:{type(error).__name__}")
            continue
        yield Record(
            shard_id=spec.shard_id, index=index, record_id=record_id_for(uri), source_uri=uri,
            relative_path=rel, source_sha256=hashlib.sha256(data).hexdigest(), data=data)


def write_image_shard(spec: ShardSpec, records: Sequence[Record], output: str, storage: Storage,
                      load: Callable[[Record], bytes]) -> dict[str, str]:
    """Write the shard's published records under ``<output>/data/``, each atomically.

    Any file a crashed earlier attempt left for a record that is not published now (quarantined
    or excluded) is removed.

    Returns:
        record_id -> output URI for every record written.
    """
    fs, root = storage.filesystem(output)
    written: dict[str, str] = {}
    for record in records:
        path = join(root, spec.output_name, record.relative_path)
        if record.is_withheld:
            remove_if_exists(fs, path)
            continue
        write_atomic(fs, path, load(record))
        failpoint("image_written")  # crash tests: part of a shard's files written
        written[record.record_id] = to_uri(fs, path)
    return written
