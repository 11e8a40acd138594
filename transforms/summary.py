"""The run summary: counts, the nothing-lost check, faces per size band, quarantine reasons.

Built from the manifests after the pipeline finishes (so resumed runs count every shard), and
written to ``<output>/report/summary.json`` and a human-readable ``summary.html``.
"""

from __future__ import annotations

import collections
import datetime
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from transforms.records import ShardSpec
from transforms.storage import filesystem, join, write_atomic

SIZE_BANDS = ((0, 20, "<20"), (20, 40, "20-40"), (40, 80, "40-80"), (80, float("inf"), ">=80"))


def size_band(short_side: float) -> str:
    """The size band of a face by its box's shorter side, in px."""
    for low, high, name in SIZE_BANDS:
        if low <= short_side < high:
            return name
    return SIZE_BANDS[-1][2]


def summarise(manifest: pa.Table, planned: Sequence[ShardSpec]) -> dict[str, Any]:
    """Figures of a run and its invariant checks, from all its manifest rows.

    ``planned`` is every shard of the input (processed now or committed earlier).
    """
    rows = manifest.to_pylist()
    statuses = collections.Counter(row["status"] for row in rows)
    reasons = collections.Counter(row["reason"] for row in rows if row["status"] != "published")
    bands: collections.Counter[str] = collections.Counter({name: 0 for *_, name in SIZE_BANDS})
    methods: collections.Counter[str] = collections.Counter()
    for row in rows:
        if row["method"]:
            methods[row["method"]] += 1
        for face in row["faces"] or []:
            bands[size_band(min(face["x2"] - face["x1"], face["y2"] - face["y1"]))] += 1
    shard_rows = collections.Counter(row["shard_id"] for row in rows)
    missing_shards = sorted(s.shard_id for s in planned if s.shard_id not in shard_rows)
    listing_mismatch = sorted(
        s.shard_id for s in planned
        if s.format == "images" and shard_rows.get(s.shard_id, 0) != len(s.input_uris))
    record_ids = [row["record_id"] for row in rows]
    duplicates = len(record_ids) - len(set(record_ids))
    inputs = len(rows)
    published = statuses.get("published", 0)
    quarantined = statuses.get("quarantined", 0)
    checks = {
        "inputs_equal_published_plus_quarantined": inputs == published + quarantined,
        "every_planned_shard_committed": not missing_shards,
        "every_listed_image_in_manifest": not listing_mismatch,
        "no_duplicate_records": duplicates == 0,
        "no_published_residual_faces": all(
            (row["residual_faces"] or 0) == 0 for row in rows if row["status"] == "published"),
        "no_published_metadata": all(
            not row["metadata_remaining"] for row in rows if row["status"] == "published"),
    }
    run_ids = sorted({row["run_id"] for row in rows})
    return {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "run_ids": run_ids,
        "shards": len(planned),
        "inputs": inputs,
        "published": published,
        "quarantined": quarantined,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "faces_total": sum(bands.values()),
        "faces_per_size_band": dict(bands),
        "methods": dict(methods),
        "missing_shards": missing_shards,
        "duplicate_records": duplicates,
        "checks": checks,
        "passed": all(checks.values()),
    }


def _table(pairs: Mapping[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in pairs.items())
    return f"<table>{cells}</table>"


def render_html(summary: Mapping[str, Any]) -> str:
    """A self-contained page (no scripts, no external assets) a data steward can read."""
    verdict = "PASSED" if summary["passed"] else "FAILED"
    counts = {k: summary[k] for k in ("shards", "inputs", "published", "quarantined",
                                      "faces_total")}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Anonymization run summary</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #999;padding:4px 8px;text-align:left}}
.passed{{color:#060}}.failed{{color:#a00}}</style></head>
<body><h1>Anonymization run summary: <span class="{verdict.lower()}">{verdict}</span></h1>
<p>Runs: {html.escape(", ".join(summary["run_ids"]))}</p>
<h2>Counts</h2>{_table(counts)}
<h2>Checks</h2>{_table(summary["checks"])}
<h2>Faces per size band (shorter side, px)</h2>{_table(summary["faces_per_size_band"])}
<h2>Methods</h2>{_table(summary["methods"])}
<h2>Quarantine reasons</h2>{_table(summary["quarantine_reasons"])}
</body></html>
"""


def write_summary(summary: Mapping[str, Any], output: str, s3_endpoint: str = "") -> str:
    """Write summary.json and summary.html under ``<output>/report/``; returns the folder."""
    fs, root = filesystem(output, s3_endpoint)
    folder = join(root, "report")
    write_atomic(fs, join(folder, "summary.json"),
                 json.dumps(summary, indent=2, sort_keys=True).encode())
    write_atomic(fs, join(folder, "summary.html"), render_html(summary).encode())
    return folder
