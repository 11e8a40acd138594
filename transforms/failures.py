"""Per-record failures become data: an unexpected exception in a per-record stage quarantines that
record with reason ``internal:<stage>:<ExceptionType>``, and the run goes on.

Stages catch the failures they expect and name them (``decode:truncated``, ``replace:encode_failed``,
...). ``quarantine_failures`` is the net under them: a bug or an unforeseen input in one record must
never fail a bundle (and with it a whole shard of other records). A record's outputs are collected
before any is emitted, so a failing record yields its quarantine only, never a partial result.

Tests inject a failure with ``ANONYMIZE_FAULT=<stage>:<relative path>`` (``inject_fault``); unset,
as always outside tests, it does nothing.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from transforms.records import Record

LOG = logging.getLogger(__name__)
FAULT_VARIABLE = "ANONYMIZE_FAULT"
Process = TypeVar("Process", bound=Callable[..., Iterable[Any]])


class InjectedFault(RuntimeError):
    """The failure ``ANONYMIZE_FAULT`` asks for (tests only)."""


def inject_fault(stage: str, record: Record) -> None:
    """Raise ``InjectedFault`` if the environment asks for one in ``stage`` for this record."""
    setting = os.environ.get(FAULT_VARIABLE)
    if setting and setting == f"{stage}:{record.relative_path}":
        raise InjectedFault(f"injected in {stage} for {record.relative_path}")


def quarantine_failures(stage: str) -> Callable[[Process], Process]:
    """Decorate a DoFn's ``process(self, record, ...)``: any exception quarantines the record as
    ``internal:<stage>:<ExceptionType>`` (logged with its traceback) instead of failing the bundle."""
    def decorate(process: Process) -> Process:
        @functools.wraps(process)
        def guarded(self: Any, record: Record, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                inject_fault(stage, record)
                outputs = list(process(self, record, *args, **kwargs))
            except Exception as error:  # noqa: BLE001 - the point: any failure of one record becomes data
                LOG.exception("%s failed on %s; quarantined", stage, record.record_id)
                yield record.quarantine(f"internal:{stage}:{type(error).__name__}")
                return
            yield from outputs
        return guarded  # type: ignore[return-value]
    return decorate
