"""WebDataset tar shards in and out: samples grouped by key, image members anonymized, sidecar
members (.json, .cls, .txt, ...) carried through byte for byte, same shard names and order.

Shard patterns use WebDataset's brace notation (``shard-{000000..000123}.tar``) or globs.
Unsafe members (absolute paths, ``..``, links, devices) quarantine their sample; a tar that
breaks part-way yields the records read so far plus one quarantined record for the rest.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence

from transforms.io_images import IMAGE_EXTENSIONS, record_id_for
from transforms.records import Record, ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, path_kind, to_uri, write_atomic_from_file

_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..012}`` numeric ranges (zero padding kept) and ``{a,b}`` lists."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    head, tail = pattern[:match.start()], pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        start, stop = numeric.group(1), numeric.group(2)
        width = len(start)
        if int(stop) < int(start):
            raise ValueError(f"input: empty brace range {{{body}}} in {pattern!r}")
        options = [str(n).zfill(width) for n in range(int(start), int(stop) + 1)]
    else:
        options = body.split(",")
    return [expanded for option in options for expanded in expand_braces(head + option + tail)]


def _common_root(paths: Sequence[str]) -> str:
    return posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(
        [posixpath.dirname(p) for p in paths])


def plan_tar_shards(input_uri: str, storage: Storage = DEFAULT_STORAGE) -> list[ShardSpec]:
    """One shard per tar file matched by the pattern.

    Raises:
        FileNotFoundError: a shard named by the pattern does not exist, or nothing matches.
    """
    paths: list[str] = []
    fs = None
    for uri in expand_braces(input_uri):
        fs, path = storage.filesystem(uri)
        if any(c in path for c in "*?["):
            paths.extend(sorted(fs.glob(path)))
        elif path_kind(fs, path, uri) == "file":
            paths.append(path)
        else:
            raise FileNotFoundError(f"input: shard not found: {uri}")
    if not paths or fs is None:
        raise FileNotFoundError(f"input: no tar shards match {input_uri}")
    root = _common_root(paths)
    shards = []
    for path in paths:
        rel = posixpath.relpath(path, root)
        shards.append(ShardSpec(
            shard_id=rel[: -len(".tar")].replace("/", "__") if rel.endswith(".tar") else rel.replace("/", "__"),
            format="webdataset", input_uris=(to_uri(fs, path),), relative_paths=(rel,),
            output_name="data"))
    return shards


def split_member_name(name: str) -> tuple[str, str]:
    """WebDataset key and suffix: ``a/b.seg.jpg`` -> (``a/b``, ``seg.jpg``)."""
    directory, base = posixpath.split(name)
    stem, dot, suffix = base.partition(".")
    return (posixpath.join(directory, stem) if directory else stem), suffix


def _unsafe(member: tarfile.TarInfo) -> str:
    name = member.name
    if name.startswith("/") or name.startswith("\\") or ".." in name.replace("\\", "/").split("/"):
        return "read:unsafe_member_name"
    if not member.isfile():
        return "read:non_regular_member"
    return ""


def _sample_record(spec: ShardSpec, index: int, key: str,
                   members: list[tuple[tarfile.TarInfo, bytes, str]]) -> Record:
    uri = f"{spec.input_uris[0]}#{key}"
    base = Record(spec.shard_id, index, record_id_for(uri), uri, key, "", b"")
    problems = [reason for _, _, reason in members if reason]
    if problems:
        return base.quarantine(problems[0])
    images = [(m, data) for m, data, _ in members
              if "." + split_member_name(m.name)[1].rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS]
    if not images:
        return base.quarantine("read:no_image_in_sample")
    if len(images) > 1:
        return base.quarantine("read:multiple_images_in_sample")
    image_member, data = images[0]
    sidecars = tuple((split_member_name(m.name)[1], payload) for m, payload, _ in members
                     if m.name != image_member.name)
    return Record(spec.shard_id, index, record_id_for(uri), uri, image_member.name,
                  hashlib.sha256(data).hexdigest(), data, extras=sidecars)


def _repeated_key(spec: ShardSpec, index: int, key: str) -> Record:
    """Members whose key an earlier, non-adjacent sample had: quarantined alone, with their own
    record id, so the samples around them are unaffected."""
    uri = f"{spec.input_uris[0]}#{key}#repeated-at-{index}"
    return Record(spec.shard_id, index, record_id_for(uri), uri, key, "", b"").quarantine("read:repeated_key")


def read_tar_shard(spec: ShardSpec, storage: Storage = DEFAULT_STORAGE) -> Iterator[Record]:
    """Stream a tar shard, yielding one record per sample (consecutive members sharing a key, as
    webdataset groups them). Members that repeat an earlier sample's key after other samples are
    one quarantined record (``read:repeated_key``)."""
    uri = spec.input_uris[0]
    fs, path = storage.filesystem(uri)
    index = 0
    key: str | None = None
    members: list[tuple[tarfile.TarInfo, bytes, str]] = []
    seen: set[str] = set()

    def sample(key: str) -> Record:
        if key in seen:
            return _repeated_key(spec, index, key)
        seen.add(key)
        return _sample_record(spec, index, key, members)

    try:
        with fs.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                # A member of a new key closes the sample before it: that one was read whole,
                # whatever happens to this member's data.
                member_key = split_member_name(member.name)[0]
                if key is not None and member_key != key:
                    yield sample(key)
                    index += 1
                    members = []
                key = member_key
                reason = _unsafe(member)
                payload = b""
                if not reason:
                    extracted = tar.extractfile(member)
                    payload = extracted.read() if extracted is not None else b""
                members.append((member, payload, reason))
    except (tarfile.TarError, OSError, EOFError) as error:
        # The sample being read when the tar broke may lack members: quarantined with the rest.
        if key is not None and members:
            yield sample(key).quarantine("read:corrupt_tar")
            index += 1
        rest = f"{uri}#unreadable-from-sample-{index}"
        record = Record(spec.shard_id, index, record_id_for(rest), rest, "", "", b"")
        yield record.quarantine(f"read:corrupt_tar:{type(error).__name__}")
        return
    if key is not None:
        yield sample(key)


def read_member(tar_uri: str, member_name: str, storage: Storage = DEFAULT_STORAGE) -> bytes | None:
    """One regular member's bytes from a tar shard (streamed until found), or None if absent."""
    fs, path = storage.filesystem(tar_uri)
    with fs.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            if member.name == member_name and member.isfile():
                extracted = tar.extractfile(member)
                return extracted.read() if extracted is not None else None
    return None


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar_shard(spec: ShardSpec, records: Sequence[Record], output: str, storage: Storage,
                    load: Callable[[Record], bytes]) -> dict[str, str]:
    """Write the published samples, in input order, to ``<output>/data/<shard path>``, atomically.

    Member headers are normalised (mtime 0, no owner names) so outputs are deterministic and
    carry nothing about the machine that wrote them.
    """
    fs, root = storage.filesystem(output)
    final = join(root, spec.output_name, spec.relative_paths[0])
    written: dict[str, str] = {}
    with tempfile.NamedTemporaryFile(suffix=".tar") as local:
        with tarfile.open(fileobj=local, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for record in records:
                if record.is_withheld:
                    continue
                data = load(record)
                tar.addfile(_tarinfo(record.relative_path, len(data)), io.BytesIO(data))
                key = split_member_name(record.relative_path)[0]
                for suffix, payload in record.extras:
                    tar.addfile(_tarinfo(f"{key}.{suffix}", len(payload)), io.BytesIO(payload))
                written[record.record_id] = f"{to_uri(fs, final)}#{key}"
        local.flush()
        write_atomic_from_file(fs, final, local.name)
    return written
