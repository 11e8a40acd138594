"""Storage through fsspec: local paths, s3:// (s3fs, with an S3-compatible endpoint option),
gs:// (gcsfs). Credentials come from each backend's standard environment; none is ever logged
or written to a manifest. Writes are atomic: staging then rename on local disk, a single
object put on object stores (an object appears whole or not at all)."""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

# Name prefix of the half-written file of an atomic local write (renamed over its target when
# whole): the only dot-files this product ever creates, and the only ones its clean-up removes.
PARTIAL_PREFIX = ".anonymize-partial-"


@dataclass(frozen=True)
class Storage:
    """How a run reaches its stores: fsspec filesystems by URI, with the endpoint of an
    S3-compatible store (empty: AWS's). A small frozen value, so it pickles to remote workers;
    credentials stay out of it (each backend reads its standard environment on the worker).
    """

    endpoint: str = ""

    def options(self, uri: str) -> dict[str, Any]:
        """fsspec options for ``uri``: only the endpoint, never credentials."""
        if uri.startswith("s3://") and self.endpoint:
            return {"client_kwargs": {"endpoint_url": self.endpoint}}
        return {}

    def filesystem(self, uri: str) -> tuple[AbstractFileSystem, str]:
        """The filesystem of ``uri`` and the path within it."""
        fs, path = fsspec.core.url_to_fs(uri, **self.options(uri))
        return fs, path

    def open(self, uri: str, mode: str = "rb", **kwargs: Any) -> Any:
        """``fsspec.open`` of ``uri`` with this storage's options (a context manager)."""
        return fsspec.open(uri, mode, **kwargs, **self.options(uri))


# Local paths and AWS's S3: the storage of a run with no endpoint set.
DEFAULT_STORAGE = Storage()


def path_kind(fs: AbstractFileSystem, path: str, uri: str) -> str:
    """``file``, ``directory`` or ``missing``; access problems raise instead of looking missing.

    Raises:
        PermissionError: the store refused access (wrong credentials or no permission); the
            message names the URI, never the credentials.
    """
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return "missing"
    except PermissionError:
        raise PermissionError(f"input: access denied to {uri} (check the store's credentials)") from None
    return "directory" if info.get("type") == "directory" else "file"


def is_local(fs: AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def to_uri(fs: AbstractFileSystem, path: str) -> str:
    """A full URI for ``path`` on ``fs`` (protocol included for remote stores)."""
    return str(fs.unstrip_protocol(path)) if not is_local(fs) else path


def partial_path(path: str) -> str:
    """Where the half-written copy of ``path`` goes during an atomic local write."""
    return join(posixpath.dirname(path), f"{PARTIAL_PREFIX}{uuid.uuid4().hex}-{posixpath.basename(path)}")


def _synced_partial(path: str, data: bytes) -> str:
    """``data`` written and synced to a local partial file beside ``path`` (its folder made); its path."""
    os.makedirs(posixpath.dirname(path), exist_ok=True)
    staging = partial_path(path)
    with open(staging, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return staging


def write_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old object or the whole new one."""
    if is_local(fs):
        os.replace(_synced_partial(path, data), path)
        return
    fs.pipe_file(path, data)


def write_atomic_from_file(fs: AbstractFileSystem, path: str, local_file: str) -> None:
    """Publish a finished local file at ``path`` atomically (rename, or one object upload)."""
    parent = posixpath.dirname(path)
    if is_local(fs):
        os.makedirs(parent, exist_ok=True)
        staging = partial_path(path)
        shutil.copyfile(local_file, staging)
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staging, path)
        return
    fs.put_file(local_file, path)


def remove_if_exists(fs: AbstractFileSystem, path: str) -> bool:
    """Delete ``path`` if it exists; returns whether it did."""
    if fs.exists(path):
        fs.rm_file(path)
        return True
    return False


def create_exclusive(fs: AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write ``data`` at ``path`` only if nothing is there; whole or not at all.

    Returns:
        False when ``path`` already exists (another writer won), True when written.
    """
    if is_local(fs):
        staging = _synced_partial(path, data)
        try:
            os.link(staging, path)  # fails if path exists: atomic and exclusive
        except FileExistsError:
            return False
        finally:
            os.unlink(staging)
        return True
    if "s3" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        try:
            fs.pipe_file(path, data, mode="create")  # If-None-Match: *
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno == errno.EINVAL and fs.exists(path):
                return False
            raise
        return True
    # Other stores: check, then write; a race between two writers is caught by verify_chain.
    if fs.exists(path):
        return False
    fs.pipe_file(path, data)
    return True
