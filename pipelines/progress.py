"""The launcher's progress bar on local runs: shards committed, images processed, images/s.

It watches the output rather than the runner, so it works the same for every runner: staged
files are images processed, manifests are shards committed.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from tqdm import tqdm

from transforms.manifest import committed_shards
from transforms.staging import STAGING_FOLDER
from transforms.storage import Storage, join


class ProgressBar:
    """A context manager that polls the output every ``interval`` seconds and draws a bar."""

    def __init__(self, output: str, storage: Storage, run_id: str, total_shards: int,
                 already_committed: int, interval: float = 1.0, enabled: bool | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self._output = output
        self._storage = storage
        self._run_id = run_id
        self._baseline = already_committed
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._bar = tqdm(total=total_shards, initial=already_committed, unit="shard", file=sys.stderr,
                         disable=(not sys.stderr.isatty()) if enabled is None else not enabled,
                         dynamic_ncols=True)
        self._started = time.monotonic()
        self._images = 0

    def _poll(self) -> None:
        committed = len(committed_shards(self._output, self._storage))
        fs, root = self._storage.filesystem(self._output)
        staged = join(root, STAGING_FOLDER, self._run_id)
        try:
            self._images = max(self._images, len(fs.find(staged)) if fs.exists(staged) else 0)
        except OSError:
            pass
        rate = self._images / max(1e-6, time.monotonic() - self._started)
        self._bar.n = committed
        self._bar.set_postfix_str(f"images {self._images}, {rate:.1f} img/s", refresh=False)
        self._bar.refresh()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._poll()
            except OSError:
                continue

    def __enter__(self) -> ProgressBar:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._poll()
        except OSError:
            pass
        self._bar.close()
