"""The job's time by stage, per input image, from the ``stage_us:<stage>`` distributions of a run.

``transforms/observability.py`` (``timed``) records them and ``metrics_summary`` reads them back (the
CLI writes that to ``report/summary.json`` under ``metrics``). Used by ``real_photos.py`` and
``whole_job.py``. Figures are worker time (all workers' time added up), not wall time.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.observability import stage_times  # noqa: E402

# The stages in the job's order, with a label; a name ending in ":" stands for every stage that
# starts with it. Indented labels are part of the stage above them (timed inside it).
ORDER: tuple[tuple[str, str], ...] = (
    ("read", "read (list and fetch bytes)"),
    ("decode", "decode + normalise"),
    ("detect:decode", "detect: decode"),
    ("detect", "detect (all detectors)"),
    ("detector:", "  of which {name} (detect and verify passes)"),
    ("replace:decode", "replace: decode"),
    ("replace", "replace"),
    ("identity", "identity evidence"),
    ("synthetic_search", "synthetic search"),
    ("encode", "encode + strip metadata"),
    ("quality", "quality metrics"),
    ("verify:decode", "verify: decode"),
    ("verify", "verify (re-detect, all detectors)"),
    ("verify:checks", "verify: checks"),
    ("stage", "write to staging"),
    ("gate", "gate (Great Expectations, per shard)"),
    ("commit", "commit (write shard)"),
)


def stage_rows(metrics: Mapping[str, Any], images: int) -> list[tuple[str, float]]:
    """(label, worker ms per input image) for every timed stage of ``metrics`` (``metrics_summary``'s
    result), in the job's order; stages not in ``ORDER`` come last under their own name."""
    times = stage_times(metrics)
    rows: list[tuple[str, float]] = []
    seen: set[str] = set()
    for key, label in ORDER:
        names = sorted(n for n in times if n.startswith(key)) if key.endswith(":") else [key] * (key in times)
        for name in names:
            seen.add(name)
            rows.append((label.format(name=name[len(key):]), 1000 * times[name]["seconds"] / max(1, images)))
    rows += [(name, 1000 * times[name]["seconds"] / max(1, images)) for name in sorted(times) if name not in seen]
    return rows


def stage_breakdown(summary: Mapping[str, Any], images: int) -> str:
    """One line: the run's stage times (``summary["metrics"]``) per input image, largest first."""
    rows = stage_rows(summary.get("metrics") or {}, images)
    return ", ".join(f"{label.strip()} {ms:.0f}" for label, ms in sorted(rows, key=lambda row: -row[1]))


def top_level_ms(rows: list[tuple[str, float]]) -> float:
    """The sum of the rows that are not part of another (indented) row: worker ms per image."""
    return sum(ms for label, ms in rows if not label.startswith(" "))
