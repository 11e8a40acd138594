"""The output's lease: one run (or erasure, or purge) at a time on an output.

A lease is an object ``<output>/_lease/<generation:012d>.json`` created exclusively (hard link on
local disk, ``If-None-Match: *`` on S3, as audit entries are): of two runs racing for the next
generation only one can win. The newest generation is the lease. It holds the holder's run id,
host and process and an expiry, renewed by a background thread while the holder runs; the holder
marks it released when done. A newer generation may be taken only over a released or stale one:
expired, or held by a process of this very host (same boot, same process namespace) that no
longer exists, i.e. a killed run. Generations are never deleted or reused, so a run that read an
old generation can never win a number that a later run already took. Before committing a shard,
a holder checks it still holds the newest generation (``check_held``), so a run that lost its
lease while frozen stops instead of writing beside the new holder.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import posixpath
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from fsspec import AbstractFileSystem

from transforms.storage import DEFAULT_STORAGE, Storage, create_exclusive, join, write_atomic

LOG = logging.getLogger(__name__)
LEASE_FOLDER = "_lease"
DIGITS = 12


class LeaseHeldError(RuntimeError):
    """The output is in use by another live run; the message says which and until when."""


class LeaseLostError(RuntimeError):
    """This run no longer holds the output's lease (it expired and another run took it)."""


def host_identity() -> str:
    """This host and process namespace: where a lease holder's pid can be checked."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{boot}/{namespace}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def is_stale(lease: dict[str, Any], now: datetime.datetime | None = None) -> bool:
    """Whether a lease may be taken over: released, expired, or its holder (on this host) is dead."""
    if lease.get("released"):
        return True
    try:
        expires = datetime.datetime.fromisoformat(str(lease["expires"]))
    except (KeyError, ValueError):
        return True
    if expires <= (now or _now()):
        return True
    return lease.get("host") == host_identity() and _process_gone(int(lease.get("pid") or 0))


def _generations(fs: AbstractFileSystem, root: str) -> list[tuple[int, str]]:
    folder = join(root, LEASE_FOLDER)
    fs.invalidate_cache(folder)
    if not fs.exists(folder):
        return []
    found = []
    for path in fs.ls(folder, detail=False):
        stem = posixpath.basename(str(path)).removesuffix(".json")
        if str(path).endswith(".json") and stem.isdigit():
            found.append((int(stem), str(path)))
    return sorted(found)


def _read(fs: AbstractFileSystem, path: str) -> dict[str, Any]:
    try:
        return dict(json.loads(bytes(fs.cat_file(path))))
    except (FileNotFoundError, ValueError):
        return {}


def current_lease(output: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """The newest lease generation of an output (empty when none)."""
    fs, root = storage.filesystem(output)
    generations = _generations(fs, root)
    return _read(fs, generations[-1][1]) | {"generation": generations[-1][0]} if generations else {}


def check_held(output: str, run_id: str, storage: Storage = DEFAULT_STORAGE) -> None:
    """Raise ``LeaseLostError`` unless ``run_id`` holds the output's newest, unreleased lease."""
    lease = current_lease(output, storage)
    if lease.get("run_id") != run_id or lease.get("released"):
        raise LeaseLostError(f"output: run {run_id} no longer holds the lease of {output} "
                             f"(now {lease.get('run_id') or 'none'}); refusing to commit")


class OutputLease:
    """Hold an output's lease for a run: ``with OutputLease(output, storage, run_id): ...``."""

    def __init__(self, output: str, storage: Storage, run_id: str, seconds: float = 120.0,
                 purpose: str = "run") -> None:
        self.output = output
        self.run_id = run_id
        self._storage = storage
        self._seconds = float(seconds)
        self._purpose = purpose
        self._path = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self, released: bool = False) -> bytes:
        now = _now()
        return json.dumps({
            "run_id": self.run_id, "purpose": self._purpose, "host": host_identity(), "pid": os.getpid(),
            "renewed": now.isoformat(), "released": released,
            "expires": (now + datetime.timedelta(seconds=self._seconds)).isoformat(),
        }, sort_keys=True).encode()

    def acquire(self, attempts: int = 20) -> None:
        """Take the lease, over a released or stale one.

        Raises:
            LeaseHeldError: another live run holds it (naming that run, its host and its expiry).
        """
        fs, root = self._storage.filesystem(self.output)
        for _ in range(attempts):
            generations = _generations(fs, root)
            following = 0
            if generations:
                number, path = generations[-1]
                held = _read(fs, path)
                if held and not is_stale(held):
                    raise LeaseHeldError(
                        f"output: {self.output} is in use by {held.get('purpose', 'run')} {held.get('run_id')} "
                        f"(host {str(held.get('host', '?')).split('/', 1)[0]}, pid {held.get('pid')}, lease until "
                        f"{held.get('expires')}); wait for it to end. A killed run's lease expires by itself.")
                if held:
                    LOG.warning("output %s: taking over the stale lease of run %s", self.output, held.get("run_id"))
                following = number + 1
            path = join(root, LEASE_FOLDER, f"{following:0{DIGITS}d}.json")
            if create_exclusive(fs, path, self._body()):
                self._path = path
                self._thread = threading.Thread(target=self._renew_loop, name="output-lease", daemon=True)
                self._thread.start()
                return
        raise LeaseHeldError(f"output: {self.output}: other runs keep taking its lease; try again")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._seconds / 4):
            try:
                self.renew()
            except LeaseLostError as error:
                LOG.error("%s", error)
                return
            except OSError as error:  # a store hiccup: try again at the next beat
                LOG.warning("output %s: lease renewal failed: %s", self.output, error)

    def renew(self) -> None:
        """Push the expiry forward; raises ``LeaseLostError`` if another run took the lease."""
        check_held(self.output, self.run_id, self._storage)
        fs, _ = self._storage.filesystem(self.output)
        write_atomic(fs, self._path, self._body())

    def release(self) -> None:
        """Mark the lease released (if still held); the next run takes the next generation."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if not self._path:
            return
        try:
            check_held(self.output, self.run_id, self._storage)
        except LeaseLostError:
            return
        fs, _ = self._storage.filesystem(self.output)
        write_atomic(fs, self._path, self._body(released=True))
        self._path = ""

    def __enter__(self) -> OutputLease:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
