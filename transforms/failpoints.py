"""Crash injection for recovery tests: ``ANONYMIZE_FAILPOINT=<point>:<n>`` kills the process
with SIGKILL the n-th time it reaches ``<point>``. Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import collections
import os
import signal

ENVIRONMENT_VARIABLE = "ANONYMIZE_FAILPOINT"
_hits: collections.Counter[str] = collections.Counter()


def failpoint(point: str) -> None:
    """Die here, like a killed worker, if the environment asks for it."""
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if not setting:
        return
    name, _, count = setting.partition(":")
    if name != point:
        return
    _hits[point] += 1
    if _hits[point] >= int(count or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
