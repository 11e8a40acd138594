"""The validation report under ``<output>/report/``: the page a data steward reads first.

``index.html`` (the run summary: the privacy and completeness verdicts, the withheld images by
reason, what was not measured, pass/fail per shard, counts, faces per size band, methods,
quarantine reasons, a small gallery of anonymized outputs with the detected boxes drawn) links
to a Great Expectations Data Docs page per validation under ``validations/``.
Every link is relative and nothing references the network, so the folder works opened from
disk or from object storage. Built from the manifests and kept validation results only, so
``anonymize report <output>`` rebuilds it for any finished run.
"""

from __future__ import annotations

import collections
import datetime
import html
import io
import tarfile
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from expectations.datadocs import render_validation_page
from expectations.gate import RUN_VALIDATION, read_validations, write_validation
from expectations.review import render_review, review_badge, review_figures
from expectations.suites import (
    WITHHELD_EXPECTATION,
    GateThresholds,
    run_expectations,
    run_figures,
    run_frame,
)
from expectations.validate import failed_names, validate_frame
from expectations.verdict import COMPLETE, SAFE, explain, make_verdicts
from transforms.io_parquet import read_row_image
from transforms.io_webdataset import read_member
from transforms.manifest import read_manifests
from transforms.records import ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, write_atomic
from transforms.summary import UNREADABLE_REASONS, is_withheld, summarise, write_summary
from transforms.thumbnails import gate_withheld, prune_thumbnails, thumbnail_name

GALLERY_SIZE = 6
THUMBNAIL_SIDE = 360
# Records listed per withheld reason on the index page; the manifest has them all.
WITHHELD_LISTED = 500


@dataclass(frozen=True)
class ReportResult:
    """What building the report found: the verdicts and where the index page is.

    ``passed``: safe and complete. ``verdicts``: both verdicts in words, as ``summary.json`` has them.
    """

    passed: bool
    index: str
    safe: bool = False
    complete: bool = False
    verdicts: Mapping[str, Any] = field(default_factory=dict)
    failed_shards: tuple[str, ...] = ()
    run_failed: tuple[str, ...] = ()
    summary_failed: tuple[str, ...] = ()
    pages: tuple[str, ...] = field(default_factory=tuple)


def _thresholds_of(validations: Mapping[str, Mapping[str, Any]]) -> GateThresholds:
    for name in sorted(validations, reverse=True):
        kept = validations[name].get("thresholds")
        if validations[name].get("level") == "shard" and kept:
            return GateThresholds(**kept)
    return GateThresholds()


def _read_output(uri: str, relative_path: str, storage: Storage) -> bytes | None:
    """A published output's bytes: a file, a tar shard's image member, or a Parquet row's image."""
    shard, _, fragment = uri.partition("#")
    try:
        if fragment and shard.endswith(".tar"):
            return read_member(shard, relative_path, storage)
        if fragment.startswith("row=") and shard.endswith(".parquet"):
            return read_row_image(shard, int(fragment[len("row="):]), storage)
        if fragment:
            return None
        fs, path = storage.filesystem(uri)
        return bytes(fs.cat_file(path))
    except (OSError, ValueError, tarfile.TarError):
        return None


def gallery_image(data: bytes, faces: Sequence[Mapping[str, Any]]) -> bytes:
    """A thumbnail of an anonymized output with its detected boxes drawn, as a metadata-free JPEG."""
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    for face in faces:
        draw.rectangle((face["x1"], face["y1"], face["x2"], face["y2"]), outline=(255, 0, 64), width=width)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _gallery(rows: Sequence[Mapping[str, Any]], storage: Storage) -> list[tuple[Mapping[str, Any], bytes]]:
    published = [row for row in rows if row["status"] == "published" and row.get("output_uri")]
    published.sort(key=lambda row: (-(row.get("face_count") or 0), row["shard_id"], row["shard_index"]))
    shown: list[tuple[Mapping[str, Any], bytes]] = []
    for row in published:
        if len(shown) == GALLERY_SIZE:
            break
        data = _read_output(row["output_uri"], row.get("relative_path") or "", storage)
        if data is None:
            continue
        try:
            shown.append((row, gallery_image(data, row.get("faces") or [])))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return shown


def _cell(value: Any) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def _pairs(pairs: Mapping[str, Any], empty: str = "none") -> str:
    if not pairs:
        return f"<p>{html.escape(empty)}</p>"
    body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in pairs.items())
    return f"<table>{body}</table>"


def _mark(ok: bool) -> str:
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def _faces_cell(row: Mapping[str, Any]) -> str:
    """A withheld record's face count, or that it was never searched (unreadable, or detection failed)."""
    if str(row.get("reason") or "").startswith((*UNREADABLE_REASONS, "detect:")):
        return "not searched"
    return str(row.get("face_count") or 0)


def _thumbnail_cell(row: Mapping[str, Any], thumbnails: Set[str]) -> str:
    """The thumbnail of a gate-withheld record's anonymized output, where one was kept; else why none."""
    name = thumbnail_name(str(row["shard_id"]), int(row["shard_index"]))
    if gate_withheld(row) and name in thumbnails:
        return (f'<td><img class="withheld-thumbnail" src="{html.escape(name)}" '
                f'alt="anonymized output of {html.escape(str(row.get("relative_path") or ""))}"></td>')
    return "<td>none</td>"


def render_withheld(rows: Sequence[Mapping[str, Any]], thumbnails: Set[str] = frozenset()) -> str:
    """The "Withheld images" section: quarantined records grouped by reason, each reason in plain
    words with what the steward can do, each record with its source, reason and face count, and for
    records withheld only by their shard's gate a thumbnail of the anonymized output (``thumbnails``:
    the names ``prune_thumbnails`` left)."""
    quarantined = sorted((row for row in rows if row["status"] == "quarantined"),
                         key=lambda row: (row["shard_id"], row["shard_index"]))
    if not quarantined:
        return '<p id="withheld-none">No image was withheld.</p>'
    groups: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
    for row in quarantined:
        groups[str(row.get("reason") or "unknown")].append(row)
    parts = ["<p>Withheld images are never published; the manifest keeps each one (status quarantined) with "
             "its reason. A thumbnail is shown only for an image withheld by its shard's gate alone: its "
             "anonymized output passed every check of its own (detected, anonymized, verified). Any other "
             "withheld image was not shown to be anonymized, so its attempt is dropped and never written; "
             "an original is never shown.</p>"]
    # Counted reasons first (most records first), then the unreadable inputs.
    for reason, members in sorted(groups.items(), key=lambda item: (not is_withheld(item[1][0]), -len(item[1]),
                                                                     item[0])):
        text = explain(reason)
        counted = "counted in the withheld share" if is_withheld(members[0]) else \
            "not counted in the withheld share: the input could not be read"
        listed = "".join(f"<tr>{_cell(row.get('source_uri') or row.get('relative_path'))}{_cell(reason)}"
                         f"{_cell(_faces_cell(row))}{_thumbnail_cell(row, thumbnails)}</tr>"
                         for row in members[:WITHHELD_LISTED])
        more = len(members) - WITHHELD_LISTED
        parts.append(
            f'<section class="withheld-group" data-reason="{html.escape(reason)}">'
            f"<h3>{html.escape(reason)}: {len(members)} {'image' if len(members) == 1 else 'images'} "
            f"({counted})</h3><p><strong>What it means:</strong> {html.escape(text.meaning)}</p>"
            f"<p><strong>What you can do:</strong> {html.escape(text.action)}</p>"
            '<table class="withheld"><tr><th>source</th><th>reason</th><th>faces</th><th>anonymized output</th></tr>'
            f"{listed}</table>"
            + (f"<p>and {more} more with this reason: see the manifest (status quarantined, reason "
               f"{html.escape(reason)}).</p>" if more > 0 else "") + "</section>")
    return "".join(parts)


def render_verdicts(verdicts: Mapping[str, Any], reasons_why: Sequence[str]) -> str:
    """The two verdicts in plain words, what was not measured, and why the run is not safe (if so)."""
    privacy, completeness = verdicts["privacy"], verdicts["completeness"]
    why = "".join(f"<li>{html.escape(line)}</li>" for line in reasons_why)
    unmeasured = "".join(f"<li>{html.escape(line)}</li>" for line in verdicts.get("not_measured") or [])
    return f"""<p id="privacy"><strong>Privacy: {html.escape(privacy["verdict"])}.</strong>
{html.escape(privacy["text"][:1].upper() + privacy["text"][1:])}.</p>
{f"<h2>Why not safe</h2><ul id='why'>{why}</ul>" if why else ""}
<p id="completeness-text"><strong>Completeness: {html.escape(completeness["verdict"])}.</strong>
{html.escape(completeness["text"][:1].upper() + completeness["text"][1:])}.</p>
<h2>What this run did not measure</h2><ul id="not-measured">{unmeasured}</ul>
"""


def render_index(summary: Mapping[str, Any], shards: Sequence[Mapping[str, Any]], run: Mapping[str, Any],
                 gallery: Sequence[tuple[str, Mapping[str, Any]]], verdicts: Mapping[str, Any],
                 reasons_why: Sequence[str], rows: Sequence[Mapping[str, Any]],
                 thumbnails: Set[str] = frozenset()) -> str:
    """The steward's page. ``shards``: one entry per planned shard; ``gallery``: (file, row);
    ``verdicts``: from ``make_verdicts``; ``rows``: the manifest rows (for the withheld images);
    ``thumbnails``: the gate-withheld records' thumbnails kept under the report folder."""
    safe = verdicts["privacy"]["verdict"] == SAFE
    complete = verdicts["completeness"]["verdict"] == COMPLETE
    shard_rows = "".join(
        "<tr>"
        + _cell(s["shard_id"])
        + f"<td>{_mark(s['passed'])}</td>"
        + _cell(s["inputs"]) + _cell(s["published"]) + _cell(s["quarantined"])
        + _cell(", ".join(s["failed"]) or "-")
        + (f'<td><a href="{html.escape(s["page"])}">validation</a></td>' if s.get("page") else "<td>missing</td>")
        + "</tr>" for s in shards)
    run_rows = "".join(
        f"<tr><th>{html.escape(item['name'])}</th><td>{_mark(item['success'])}</td>"
        f"{_cell(item['description'])}</tr>" for item in run.get("expectations", []))
    figures = {k: v for k, v in (run.get("figures") or {}).items()}
    tiles = "".join(
        f'<figure><img src="{html.escape(name)}" alt="anonymized output {i + 1}">'
        f"<figcaption>{html.escape(str(row['relative_path']))} ({row.get('face_count') or 0} faces, "
        f"{html.escape(str(row.get('method') or '-'))})</figcaption></figure>"
        for i, (name, row) in enumerate(gallery))
    counts = {k: summary[k] for k in ("shards", "inputs", "published", "quarantined", "faces_total")}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Anonymization run report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}th,td{{border:1px solid #bbb;padding:4px 8px;text-align:left}}
.pass{{color:#060;font-weight:bold}}.fail{{color:#a00;font-weight:bold}}
h1 .verdict{{padding:.1em .4em;border-radius:4px;color:#fff}}.ok{{background:#060}}.bad{{background:#a00}}
.warn{{background:#a50}}
.gallery{{display:flex;flex-wrap:wrap;gap:1em}}figure{{margin:0;max-width:{THUMBNAIL_SIDE}px}}
figcaption{{font-size:.85em;color:#555}}.withheld-thumbnail{{max-width:160px;max-height:160px}}</style></head>
<body>
<h1>Anonymization run: <span id="verdict" class="verdict {'ok' if safe else 'bad'}">\
{html.escape(verdicts["privacy"]["verdict"])}</span>
<span id="completeness" class="verdict {'ok' if complete else 'warn'}">\
{html.escape(verdicts["completeness"]["verdict"])}</span>
{review_badge(verdicts.get("review") or {"verdict": "NOT REVIEWED"})}</h1>
<p>Runs: {html.escape(", ".join(summary.get("run_ids", [])))}. Report built
{html.escape(datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))}.</p>
{render_verdicts(verdicts, reasons_why)}
<h2 id="human-review">Human review</h2>{render_review(verdicts.get("review") or {})}
<h2 id="withheld">Withheld images</h2>{render_withheld(rows, thumbnails)}
<h2>Shards (Great Expectations gate)</h2>
<table id="shards"><tr><th>shard</th><th>gate</th><th>inputs</th><th>published</th><th>quarantined</th>
<th>failed expectations</th><th>Data Docs</th></tr>{shard_rows}</table>
<h2>Run-level expectations {_mark(bool(run.get("passed")))}</h2>
<table id="run">{run_rows}</table>
<p><a href="{html.escape(str(run.get("page", "")))}">Run validation (Data Docs)</a> &middot;
<a href="summary.html">Run summary checks</a></p>
<h2>Counts</h2>{_pairs(counts)}
<h2>Faces per size band (shorter side, px)</h2>{_pairs(summary["faces_per_size_band"])}
<h2>Methods used</h2>{_pairs(summary["methods"])}
<h2>Quarantine reasons</h2>{_pairs(summary["quarantine_reasons"], "no record was quarantined")}
<h2>Gate thresholds</h2>{_pairs(run.get("thresholds") or {})}
<h2>Run figures</h2>{_pairs(figures)}
<h2>Gallery: anonymized outputs with the detected boxes drawn</h2>
<div class="gallery">{tiles or "<p>no published image output to show</p>"}</div>
</body></html>
"""


def build_report(output: str, storage: Storage = DEFAULT_STORAGE, planned: Sequence[ShardSpec] | None = None,
                 summary: Mapping[str, Any] | None = None, thresholds: GateThresholds | None = None,
                 extra_figures: Mapping[str, Any] | None = None) -> ReportResult:
    """Validate the run, render every Data Docs page and the index page; returns the verdict.

    Args:
        output: the run's output prefix.
        storage: how the output is reached (its S3 endpoint, if any).
        planned: every shard of the input (default: the shards the manifests and validations name).
        summary: the run summary already written by ``anonymize run`` (default: made and written here).
        thresholds: the gate thresholds (default: those kept with the shard validations).
        extra_figures: run-level figures of later stages (accuracy impact, recall, ...).
    """
    manifest = read_manifests(output, storage)
    rows = manifest.to_pylist()
    validations = {k: v for k, v in read_validations(output, storage).items() if k != RUN_VALIDATION}
    if planned is None:
        names = sorted({row["shard_id"] for row in rows} | set(validations))
        planned = [ShardSpec(name, "", (), (), "") for name in names]
    planned_ids = [spec.shard_id for spec in planned]
    if summary is None:
        summary = summarise(manifest, planned)
    thresholds = thresholds or _thresholds_of(validations)

    figures = run_figures(rows, planned_ids, validations, summary, extra_figures)
    expectations = run_expectations(figures, thresholds)
    result = validate_frame("run", run_frame(figures), expectations,
                            {"level": "run", "thresholds": thresholds.as_dict()})
    run_failed = failed_names(result)
    run_record = {
        "level": "run", "name": RUN_VALIDATION, "passed": not run_failed, "failed": run_failed,
        "thresholds": thresholds.as_dict(), "figures": figures, "run_ids": summary.get("run_ids", []),
        "validated_at": datetime.datetime.now(datetime.UTC).isoformat(), "gx_result": result,
    }
    write_validation(run_record, output, RUN_VALIDATION, storage)

    fs, root = storage.filesystem(output)
    folder = join(root, "report")
    pages: list[str] = []
    for name, record in [*validations.items(), (RUN_VALIDATION, run_record)]:
        path = join(folder, "validations", f"{name}.html")
        write_atomic(fs, path, render_validation_page(record["gx_result"], back_link="../index.html").encode())
        pages.append(path)

    per_shard: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for row in rows:
        per_shard[row["shard_id"]][row["status"]] += 1
    shards: list[dict[str, Any]] = []
    for shard_id in planned_ids:
        kept = validations.get(shard_id)
        counts = per_shard.get(shard_id, collections.Counter())
        shards.append({
            "shard_id": shard_id, "passed": bool(kept and kept.get("passed")),
            "failed": list(kept.get("failed", [])) if kept else ["no validation result"],
            "inputs": sum(counts.values()), "published": counts["published"], "quarantined": counts["quarantined"],
            "page": f"validations/{shard_id}.html" if kept else "",
        })
    descriptions = {item["expectation_config"]["meta"]["name"]: item for item in result["results"]}
    run_view = {
        "passed": not run_failed, "thresholds": thresholds.as_dict(), "figures": figures,
        "page": f"validations/{RUN_VALIDATION}.html",
        "expectations": [{"name": name, "success": item["success"],
                          "description": item["expectation_config"].get("description") or ""}
                         for name, item in descriptions.items()],
    }
    gallery: list[tuple[str, Mapping[str, Any]]] = []
    for i, (row, image) in enumerate(_gallery(rows, storage)):
        name = f"gallery/{i:02d}.jpg"
        write_atomic(fs, join(folder, name), image)
        gallery.append((name, row))

    failed_shards = tuple(str(s["shard_id"]) for s in shards if not s["passed"])
    summary_failed = tuple(name for name, ok in summary.get("checks", {}).items() if not ok)
    # Privacy is today's checks; the withheld share is about completeness only.
    privacy_failed = [name for name in run_failed if name != WITHHELD_EXPECTATION]
    why = [f"shard {s['shard_id']} failed its gate ({', '.join(s['failed'])}); its records are quarantined"
           for s in shards if not s["passed"]]
    why += [f"run expectation failed: {name}" for name in privacy_failed if name != "no_shard_failed_gate"]
    why += [f"run check failed: {name}" for name in summary_failed]
    safe = not failed_shards and not privacy_failed and not summary_failed
    complete = WITHHELD_EXPECTATION not in run_failed
    verdicts = make_verdicts(summary, safe, why, complete, thresholds.max_withheld_share)
    verdicts["review"] = review_figures(output, storage, planned_ids)  # "reviewed" only after a review
    if verdicts["review"]["reviewed"]:
        verdicts["not_measured"].insert(1, "A human review bounds the missed faces instead: "
                                        + verdicts["review"]["text"] + ".")
    write_summary({**summary, "verdicts": verdicts}, output, storage)
    index = join(folder, "index.html")
    thumbnails = prune_thumbnails(fs, root, rows)  # only gate-withheld records' thumbnails are ever shown
    write_atomic(fs, index, render_index(summary, shards, run_view, gallery, verdicts, why, rows, thumbnails).encode())
    return ReportResult(passed=safe and complete, index=index, safe=safe, complete=complete, verdicts=verdicts,
                        failed_shards=failed_shards, run_failed=tuple(run_failed), summary_failed=summary_failed,
                        pages=tuple(pages))
