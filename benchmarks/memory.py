"""Peak resident memory of a benchmark's child processes (a CLI job, its Beam SDK workers)."""

from __future__ import annotations

import threading

import psutil


class PeakChildMemory:
    """Samples the resident memory of this process's children, recursively, every ``interval`` s.

    ``peak_mb`` is the largest single process seen (a worker, or the launcher), ``peak_total_mb``
    the largest sum over all of them at one sample (what the machine needed).
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.peak_mb = 0.0
        self.peak_total_mb = 0.0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            total = 0.0
            for child in psutil.Process().children(recursive=True):
                try:
                    rss = child.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                total += rss
                self.peak_mb = max(self.peak_mb, rss)
            self.peak_total_mb = max(self.peak_total_mb, total)

    def __enter__(self) -> PeakChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
