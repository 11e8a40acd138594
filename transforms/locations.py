"""Input and output locations, checked before any work: they must not overlap, and every output
location must be writable (a probe object is written and deleted)."""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from transforms.staging import PRODUCT_FOLDERS, STAGING_FOLDER
from transforms.storage import (
    DEFAULT_STORAGE,
    PARTIAL_PREFIX,
    Storage,
    is_local,
    join,
    to_uri,
)

_PATTERN_CHARS = "*?[{"


def fixed_prefix(path: str) -> str:
    """The part of a path, glob or brace pattern that names a fixed folder or file."""
    cut = min((path.find(c) for c in _PATTERN_CHARS if c in path), default=-1)
    if cut == -1:
        return path.rstrip("/") or "/"
    return posixpath.dirname(path[:cut]).rstrip("/") or "/"


def location(uri: str, storage: Storage = DEFAULT_STORAGE) -> tuple[str, str]:
    """(scheme, fixed path) of a URI: local paths absolute with symlinks resolved; object-store
    paths as ``bucket/key`` prefixes."""
    fs, path = storage.filesystem(uri)
    if is_local(fs):
        return "file", os.path.realpath(fixed_prefix(path))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return str(protocol), fixed_prefix(path).strip("/")


def _within(inner: str, outer: str) -> bool:
    """Whether path ``inner`` is ``outer`` or below it, component by component."""
    return inner == outer or outer in ("", "/") or inner.startswith(outer.rstrip("/") + "/")


def check_no_overlap(input_uri: str, output_uri: str, storage: Storage = DEFAULT_STORAGE) -> None:
    """Refuse an output inside the input, an input inside the output, or the two the same.

    Raises:
        ValueError: naming ``input`` and ``output``.
    """
    (in_scheme, in_path), (out_scheme, out_path) = location(input_uri, storage), location(output_uri, storage)
    if in_scheme != out_scheme:
        return
    if in_path == out_path:
        where = "are the same location"
    elif _within(out_path, in_path):
        where = "overlap: the output is inside the input (the run would read its own outputs back)"
    elif _within(in_path, out_path):
        where = "overlap: the input is inside the output (the run would write and clean up among its sources)"
    else:
        return
    raise ValueError(f"input, output: {input_uri!r} and {output_uri!r} {where}; choose an output outside the input")


def _probe_filesystem(uri: str, storage: Storage) -> tuple[AbstractFileSystem, str]:
    """The output's filesystem for the probe: on S3 with few retries and a short connect timeout,
    so an unreachable store or missing credentials fail in seconds, not after minutes of retries."""
    fs, path = storage.filesystem(uri)
    if is_local(fs) or not uri.startswith("s3://"):
        return fs, path
    options: dict[str, Any] = storage.options(uri) | {
        "skip_instance_cache": True,
        "config_kwargs": {"retries": {"max_attempts": 2}, "connect_timeout": 5, "read_timeout": 20}}
    probe_fs = fsspec.filesystem("s3", **options)
    probe_fs.retries = 2  # s3fs's own retry loop (a class attribute, 5 by default)
    return probe_fs, path


def _describe(error: BaseException) -> str:
    text = str(error).strip() or "no detail"
    return f"{type(error).__name__}: {text}"


def _probe(fs: AbstractFileSystem, folder: str) -> None:
    """Write and delete one object in ``folder`` (on local disk: in its nearest existing folder,
    so that the probe creates nothing)."""
    if is_local(fs):
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise NotADirectoryError(f"{folder} is a file, not a folder")
    probe = join(folder, f"{PARTIAL_PREFIX}probe-{uuid.uuid4().hex}")
    fs.pipe_file(probe, b"write probe")
    fs.rm_file(probe)


def check_output_writable(output: str, storage: Storage = DEFAULT_STORAGE) -> None:
    """Before any work: every location the run writes under ``output`` is a folder (or absent) and
    takes an object: the output itself and its ``data``, ``manifest``, ``report``, ``audit``,
    ``_staging`` and lease folders.

    Raises:
        ValueError: naming ``output`` and the location (never credentials).
    """
    fs, root = _probe_filesystem(output, storage)
    for name in ("", *PRODUCT_FOLDERS, STAGING_FOLDER, "_lease"):
        path = join(root, name) if name else root.rstrip("/")
        where = to_uri(fs, path)
        try:
            if fs.isfile(path):
                raise ValueError(f"output: {where} is a file, not a folder")
            _probe(fs, path)  # each prefix: object-store permissions may differ by prefix
        except ValueError:
            raise
        except Exception as error:  # noqa: BLE001 - any store error here is a bad output location
            raise ValueError(f"output: cannot write to {where} ({_describe(error)})") from None
