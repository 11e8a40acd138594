"""The run summary: counts, the nothing-lost check, faces per size band, quarantine reasons.

Built from the manifests after the pipeline finishes (so resumed runs count every shard), and
written to ``<output>/report/summary.json`` and a human-readable ``summary.html``.
"""

from __future__ import annotations

import collections
import datetime
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from transforms.accuracy import accuracy_impact
from transforms.identity import CHECKED, FaceStatus
from transforms.identity import MATCH_THRESHOLD as IDENTITY_MATCH_THRESHOLD
from transforms.identity import MODEL_NAME as IDENTITY_MODEL
from transforms.records import FACE, TEXT, ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, write_atomic

SIZE_BANDS = ((0, 20, "<20"), (20, 40, "20-40"), (40, 80, "40-80"), (80, float("inf"), ">=80"))
# Quarantine reasons of inputs that could not be read as images at all: not "withheld" (the run's
# gate_max_withheld_share bounds what the anonymizer itself held back). Exclusions are not quarantined.
UNREADABLE_REASONS = ("decode:", "read:")
# A detection scored under this is reported as uncertain (it is replaced all the same).
LOW_DETECTION_SCORE = 0.9
# The manifest column of per-face identity-check statuses, in ``faces`` order (newer manifests).
IDENTITY_STATUS_COLUMN = "face_identity_statuses"


def size_band(short_side: float) -> str:
    """The size band of a face by its box's shorter side, in px."""
    for low, high, name in SIZE_BANDS:
        if low <= short_side < high:
            return name
    return SIZE_BANDS[-1][2]


def image_quality_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Min, median and mean of each per-image quality metric over published rows."""
    figures: dict[str, Any] = {}
    for name in ("pixel_change", "psnr", "ssim", "psnr_outside_faces", "ssim_outside_faces"):
        values = sorted(float(r[name]) for r in rows if r["status"] == "published" and r.get(name) is not None)
        figures[name] = {"n": len(values), "min": values[0] if values else None,
                         "median": values[len(values) // 2] if values else None,
                         "mean": sum(values) / len(values) if values else None}
    return figures


def _measured(distances: Sequence[Any] | None) -> list[float]:
    return [float(d) for d in distances or () if d is not None and math.isfinite(float(d))]


def is_withheld(row: Mapping[str, Any]) -> bool:
    """Whether a manifest row was withheld: quarantined for a reason other than an unreadable input."""
    return row["status"] == "quarantined" and not str(row.get("reason") or "").startswith(UNREADABLE_REASONS)


# Older manifests (before per-face statuses): faces under this many px were not gated.
LEGACY_GATED_FACE = 20.0


def _short_side(face: Mapping[str, Any]) -> float:
    return float(min(face["x2"] - face["x1"], face["y2"] - face["y1"])) if face and "x1" in face else math.inf


def face_identity_statuses(row: Mapping[str, Any]) -> list[str]:
    """Per face of a manifest row (in ``faces`` order), how the identity check treated it.

    Read from the ``face_identity_statuses`` column where the manifest has it (``FaceStatus``).
    Older manifests: derived from ``identity_check``, the face sizes and ``face_identity_distances``
    under the rule of their time (faces of 20 px or more within the match distance matched);
    ``not_checked`` when the check was off, ``unmeasured`` for a face with no distance.
    """
    faces = row.get("faces") or []
    recorded = row.get(IDENTITY_STATUS_COLUMN)
    if recorded:
        return [str(status) for status in recorded]
    if row.get("identity_check") != CHECKED:
        return ["not_checked"] * len(faces)
    distances = row.get("face_identity_distances") or []
    statuses: list[str] = []
    for i, face in enumerate(faces):
        side = _short_side(face)
        if side < LEGACY_GATED_FACE:
            statuses.append(FaceStatus.UNMEASURABLE_SMALL)
        elif i >= len(distances) or distances[i] is None:
            statuses.append("unmeasured")
        else:
            statuses.append(FaceStatus.MATCHED if float(distances[i]) <= IDENTITY_MATCH_THRESHOLD
                            else FaceStatus.MEASURED_NO_MATCH)
    return statuses


def regions_per_kind(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Regions found (``found``) and those in published images (``published``), per kind (``face``,
    ``text``), from ``face_kinds`` (a row without it: faces only)."""
    counts: dict[str, dict[str, int]] = {"found": {}, "published": {}}
    for row in rows:
        kinds = row.get("face_kinds") or ["face"] * len(row.get("faces") or [])
        for kind in kinds:
            counts["found"][kind] = counts["found"].get(kind, 0) + 1
            if row["status"] == "published":
                counts["published"][kind] = counts["published"].get(kind, 0) + 1
    return counts


def not_measured(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the checks could not vouch for in the published images: faces per identity status,
    detections under ``LOW_DETECTION_SCORE``, and recall (never measured by a run: no ground truth)."""
    published = [row for row in rows if row["status"] == "published"]
    # Text regions (face_kinds) are neither faces for the identity check nor uncertain face detections.
    kinds = [row.get("face_kinds") or [FACE] * len(row["faces"] or []) for row in published]
    faces = [face for row, k in zip(published, kinds, strict=True)
             for face, kind in zip(row["faces"] or [], k, strict=True) if kind == FACE]
    statuses = collections.Counter(status for row, k in zip(published, kinds, strict=True)
                                   for status, kind in zip(face_identity_statuses(row), k, strict=False)
                                   if kind == FACE)
    return {
        "published_faces": len(faces),
        "published_text_regions": sum(kind == TEXT for k in kinds for kind in k),
        "unread_text_regions": sum(int(row.get("unread_text_regions") or 0) for row in published),
        "identity_statuses": dict(sorted(statuses.items())),
        "low_score_threshold": LOW_DETECTION_SCORE,
        "low_score_detections": sum(1 for face in faces
                                    if face.get("score") is not None and face["score"] < LOW_DETECTION_SCORE),
        "recall": "not measured: no ground truth (labelled faces) for this run's images",
    }


def identity_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per method: faces replaced, their identity statuses (``statuses``: counts per
    ``identity.FaceStatus``), identity distances of the measured faces, how many were ``matched``,
    faces escalated (replaced again, more strongly, because they matched), faces skipped (check
    off), and the share re-detected as a face."""
    per: dict[str, dict[str, Any]] = {}
    for row in rows:
        method = row.get("method")
        faces = row.get("faces") or []
        if not method or not faces:
            continue
        entry = per.setdefault(method, {"faces": 0, "checked": 0, "skipped": 0, "distances": [],
                                        "statuses": {status: 0 for status in FaceStatus.ALL},
                                        "escalated": 0, "redetect_checked": 0, "redetected": 0})
        entry["faces"] += len(faces)
        entry["escalated"] += sum(1 for level in row.get("face_escalations") or [] if level)
        if row.get("identity_check") == "checked":
            entry["checked"] += len(faces)
            entry["distances"].extend(_measured(row.get("face_identity_distances")))
            for status in row.get("face_identity_statuses") or ():
                entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
        else:
            entry["skipped"] += len(faces)
        scores = row.get("face_redetected_scores") or []
        entry["redetect_checked"] += len(scores)
        entry["redetected"] += sum(1 for score in scores if score > 0)
    out: dict[str, Any] = {}
    for method, entry in sorted(per.items()):
        distances = entry.pop("distances")
        checked = entry.pop("redetect_checked")
        out[method] = entry | {
            "measured": len(distances),
            "matched": entry["statuses"][FaceStatus.MATCHED],
            "mean_distance": sum(distances) / len(distances) if distances else None,
            "min_distance": min(distances) if distances else None,
            "within_threshold": sum(1 for d in distances if d <= IDENTITY_MATCH_THRESHOLD),
            "redetected_share": entry["redetected"] / checked if checked else None,
        }
    return out


def reidentification_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shards' rank-1 re-identification tests over the published rows: probes (measured
    faces), hits (picked out among the shard's originals and the impostors), the rate, what chance
    gives (the mean of 1 / gallery over the probes), and the smallest shard p-value."""
    probes = hits = 0
    chance = 0.0
    p_values: dict[str, float] = {}
    for row in rows:
        if row["status"] != "published" or not row.get("identity_rank1_probes"):
            continue
        probes += int(row["identity_rank1_probes"])
        hits += int(row.get("identity_rank1_hits") or 0)
        chance += int(row["identity_rank1_probes"]) / max(1, int(row.get("identity_rank1_gallery") or 1))
        if row.get("shard_reid_p_value") is not None:
            p_values[row["shard_id"]] = float(row["shard_reid_p_value"])
    return {"probes": probes, "hits": hits, "rate": hits / probes if probes else None,
            "chance": chance / probes if probes else None, "shards": len(p_values),
            "min_shard_p_value": min(p_values.values()) if p_values else None}


def published_identity_matches(row: Mapping[str, Any]) -> int:
    """A row's ``matched`` faces (``face_identity_statuses``, older manifests included)."""
    return face_identity_statuses(row).count(FaceStatus.MATCHED)


def summarise(manifest: pa.Table, planned: Sequence[ShardSpec],
              reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Figures of a run and its invariant checks, from all its manifest rows.

    ``planned`` is every shard of the input (processed now or committed earlier). ``reference``
    (``model``, ``sample_size``, ``sample_seed``, ``min_top1_agreement``) is given when a reference
    model ran: the accuracy impact is added, and its top-1 agreement bound becomes a check.
    """
    rows = manifest.to_pylist()
    statuses = collections.Counter(row["status"] for row in rows)
    reasons = collections.Counter(row["reason"] for row in rows if row["status"] == "quarantined")
    withheld = collections.Counter(row["reason"] for row in rows if is_withheld(row))
    bands: collections.Counter[str] = collections.Counter({name: 0 for *_, name in SIZE_BANDS})
    methods: collections.Counter[str] = collections.Counter()
    # How published outputs were written and how verification found their faces (manifest columns
    # output_encoding and verify_detection; older manifests have neither: "unrecorded").
    outputs: collections.Counter[str] = collections.Counter()
    for row in rows:
        if row["method"]:
            methods[row["method"]] += 1
        if row["status"] == "published":
            outputs[f"{row.get('output_encoding') or 'unrecorded'}, "
                    f"detection {row.get('verify_detection') or 'unrecorded'}"] += 1
        for face in row["faces"] or []:
            if face.get("detector") == TEXT:
                continue  # text regions: regions_per_kind
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
    excluded, erased = statuses.get("excluded", 0), statuses.get("erased", 0)
    checks = {
        # Exclusions (objections) are counted, never processed; erased rows stay in the manifest.
        "inputs_equal_published_quarantined_excluded_erased": inputs == published + quarantined + excluded + erased,
        "every_planned_shard_committed": not missing_shards,
        "every_listed_image_in_manifest": not listing_mismatch,
        "no_duplicate_records": duplicates == 0,
        "no_published_residual_faces": all(
            (row["residual_faces"] or 0) == 0 for row in rows if row["status"] == "published"),
        "no_published_metadata": all(
            not row["metadata_remaining"] for row in rows if row["status"] == "published"),
    }
    checks["no_published_identity_match"] = all(
        published_identity_matches(row) == 0 for row in rows if row["status"] == "published")
    accuracy = None
    if reference is not None:
        accuracy = accuracy_impact(rows, **reference)
        # Nothing classified while something was published means the reference model did not run.
        checks["reference_top1_agreement_at_least_bound"] = bool(accuracy["passed"]) if \
            accuracy["passed"] is not None else published == 0
    run_ids = sorted({row["run_id"] for row in rows})
    return {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "run_ids": run_ids,
        "shards": len(planned),
        "inputs": inputs,
        "published": published,
        "quarantined": quarantined,
        "excluded": excluded,
        "erased": erased,
        "quarantine_reasons": dict(sorted(reasons.items())),
        # Completeness: quarantined for a reason other than an unreadable input, as a share of all inputs.
        "withheld": sum(withheld.values()),
        "withheld_share": sum(withheld.values()) / inputs if inputs else 0.0,
        "withheld_reasons": dict(sorted(withheld.items())),
        "not_measured": not_measured(rows),
        "faces_total": sum(bands.values()),
        "regions_per_kind": regions_per_kind(rows),
        "faces_per_size_band": dict(bands),
        "methods": dict(methods),
        "published_outputs": dict(sorted(outputs.items())),
        "missing_shards": missing_shards,
        "duplicate_records": duplicates,
        "image_quality": image_quality_summary(rows),
        "identity": identity_summary(rows),
        "reidentification": reidentification_summary(rows),
        "accuracy_impact": accuracy,
        "checks": checks,
        "passed": all(checks.values()),
    }


def _table(pairs: Mapping[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in pairs.items())
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _rate_text(rate: Mapping[str, Any] | None, scale: float = 1.0) -> str:
    if not rate or rate.get("value") is None:
        return "-"
    low, high = rate["ci95"]
    return f"{_fmt(rate['value'] * scale)} (95% CI {_fmt(low * scale)} to {_fmt(high * scale)}, n={rate['n']})"


def _delta_bars(per_class: Sequence[Mapping[str, Any]], key: str, scale: float) -> str:
    """An inline SVG bar per class (worst first): the per-class plot, without scripts."""
    shown = list(per_class)[:20]
    if not shown:
        return ""
    row, label_w, bar_w = 18, 220, 300
    bars = []
    for i, entry in enumerate(shown):
        value = float(entry[key]) * scale
        width = min(bar_w / 2, abs(value) / 100.0 * bar_w / 2)
        x = label_w + bar_w / 2 - (width if value < 0 else 0)
        colour = "#a00" if value < 0 else "#060"
        name = html.escape(f"{entry['class']} {entry['name']} (n={entry['count']})")
        bars.append(f'<text x="0" y="{i * row + 13}" font-size="12">{name}</text>'
                    f'<rect x="{x:.1f}" y="{i * row + 3}" width="{width:.1f}" height="12" fill="{colour}"/>'
                    f'<text x="{label_w + bar_w + 6}" y="{i * row + 13}" font-size="12">{value:+.1f}</text>')
    axis = label_w + bar_w / 2
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 60}" '
            f'height="{len(shown) * row + 4}"><line x1="{axis}" y1="0" x2="{axis}" '
            f'y2="{len(shown) * row}" stroke="#333"/>{"".join(bars)}</svg>')


def _accuracy_html(accuracy: Mapping[str, Any] | None) -> str:
    if not accuracy:
        return "<h2>Accuracy impact</h2><p>No reference model configured (reference_model).</p>"
    figures = {
        "reference model": accuracy["model"].get("model"),
        "weights": accuracy["model"].get("weights"),
        "sample size (0: all) / seed": f"{accuracy['sample_size']} / {accuracy['sample_seed']}",
        "images classified / labelled": f"{accuracy['images_classified']} / {accuracy['images_labelled']}",
        "top-1 agreement": _rate_text(accuracy["top1_agreement"]),
        "top-5 agreement": _rate_text(accuracy["top5_agreement"]),
        "required top-1 agreement": accuracy["min_top1_agreement"],
    }
    for k in ("top1", "top5"):
        if f"{k}_accuracy_original" in accuracy:
            delta = accuracy[f"{k}_accuracy_delta_points"]
            figures[f"{k} accuracy original"] = _rate_text(accuracy[f"{k}_accuracy_original"])
            figures[f"{k} accuracy anonymized"] = _rate_text(accuracy[f"{k}_accuracy_anonymized"])
            figures[f"{k} accuracy delta, points"] = (
                f"{_fmt(delta['value'])} (95% bootstrap CI {_fmt(delta['ci95'][0])} to {_fmt(delta['ci95'][1])})")
    by_label = accuracy["per_class_by"] == "label"
    head = ("<tr><th>class</th><th>name</th><th>count</th><th>top-1 agreement</th>"
            + ("<th>top-1 acc. original</th><th>top-1 acc. anonymized</th><th>delta, points</th>"
               if by_label else "") + "</tr>")
    cells = []
    for entry in accuracy["per_class"]:
        extra = "".join(f"<td>{_fmt(entry[k])}</td>" for k in (
            "top1_accuracy_original", "top1_accuracy_anonymized", "top1_delta_points")) if by_label else ""
        cells.append(f"<tr><td>{entry['class']}</td><td>{html.escape(str(entry['name']))}</td>"
                     f"<td>{entry['count']}</td><td>{_fmt(entry['top1_agreement'])}</td>{extra}</tr>")
    plot_key, scale, what = (("top1_delta_points", 1.0, "top-1 accuracy delta, points")
                             if by_label else ("top1_agreement", 100.0, "top-1 agreement, %"))
    return (f"<h2>Accuracy impact</h2>{_table(figures)}"
            f"<h3>Per class (by {'label' if by_label else 'original top-1 prediction'}, worst first)</h3>"
            f"<p>{what}, 20 worst classes</p>{_delta_bars(accuracy['per_class'], plot_key, scale)}"
            f"<table>{head}{''.join(cells)}</table>")


def _quality_html(quality: Mapping[str, Mapping[str, Any]] | None) -> str:
    if not quality:
        return ""
    head = "<tr><th>metric</th><th>n</th><th>min</th><th>median</th><th>mean</th></tr>"
    cells = "".join(f"<tr><th>{html.escape(name)}</th>"
                    + "".join(f"<td>{_fmt(fig[k])}</td>" for k in ("n", "min", "median", "mean")) + "</tr>"
                    for name, fig in quality.items())
    return ("<h2>Image quality of published outputs vs originals</h2><p>PSNR in dB (identical: 100), "
            "SSIM on luma; outside faces = outside the replaced regions, where only the encoder "
            f"changes pixels.</p><table>{head}{cells}</table>")


STATUS_WORDS = {
    FaceStatus.REMOVED_BY_CONSTRUCTION: "removed by construction: filled solid, no pixel of the face is left",
    FaceStatus.MEASURED_NO_MATCH: "measured, no match: the model could read the original, and the replacement "
                                  "is not picked out as that person",
    FaceStatus.MATCHED: "matched: the replacement is still picked out as its original (escalated; quarantined "
                        "if it stays so)",
    FaceStatus.UNMEASURABLE_SMALL: "too small to measure (under identity_min_face_size): protected by the "
                                   "blur's strength, not by a measurement",
    FaceStatus.UNMEASURABLE_NO_FACE: "not measurable: the face model finds no face in the original there "
                                     "(profile, occluded, blurred, or not a face); protected by the blur's strength",
}


def _identity_html(identity: Mapping[str, Mapping[str, Any]] | None,
                   reidentification: Mapping[str, Any] | None = None) -> str:
    if not identity:
        return ""
    keys = ("faces", "checked", "skipped", "measured", "matched", "mean_distance", "min_distance",
            "within_threshold", "escalated", "redetected_share")
    head = "<tr><th>method</th>" + "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys) + "</tr>"
    def num(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))

    cells = "".join(f"<tr><th>{html.escape(method)}</th>" + "".join(f"<td>{num(fig.get(k))}</td>" for k in keys)
                    + "</tr>" for method, fig in identity.items())
    totals: collections.Counter[str] = collections.Counter()
    for fig in identity.values():
        totals.update(fig.get("statuses") or {})
    statuses = "".join(f"<li><b>{totals.get(status, 0)}</b> {html.escape(words)}</li>"
                       for status, words in STATUS_WORDS.items())
    reid = ""
    if reidentification and reidentification.get("probes"):
        reid = (f"<p>Re-identification test: of {reidentification['probes']} measured faces, "
                f"{reidentification['hits']} were nearest to their own original among their shard's originals "
                f"and the impostor gallery (rate {num(reidentification['rate'])}, chance "
                f"{num(reidentification['chance'])}; smallest shard p-value "
                f"{num(reidentification['min_shard_p_value'])}).</p>")
    return (f"<h2>Identity evidence</h2><p>Each replaced face has one status:</p><ul>{statuses}</ul>"
            f"<p>Distances are between each measured face and its original in {html.escape(IDENTITY_MODEL)} "
            f"embedding space. A face is matched when it is within {IDENTITY_MATCH_THRESHOLD} of its original "
            "and nearer to it than to any other original of its image or any impostor; only matched faces are "
            "escalated (twice the margin and blur, then a solid fill) and, if still matched, quarantined as "
            "verify:identity_match. Within threshold counts measured faces under the distance alone. "
            "Re-detected share: replaced faces the verification detector still finds as a face (a useful "
            f"synthetic substitute keeps it high).</p><table>{head}{cells}</table>{reid}")


def _kinds(counts: Mapping[str, Mapping[str, int]] | None) -> dict[str, str]:
    """``regions_per_kind`` as rows: per kind, regions found and those in published images."""
    if not counts:
        return {}
    kinds = sorted(set(counts["found"]) | set(counts["published"]))
    return {kind: f"{counts['found'].get(kind, 0)} found, {counts['published'].get(kind, 0)} in published images"
            for kind in kinds}


def render_html(summary: Mapping[str, Any]) -> str:
    """A self-contained page (no scripts, no external assets) a data steward can read."""
    verdict = "PASSED" if summary["passed"] else "FAILED"
    counts = {k: summary.get(k, 0) for k in ("shards", "inputs", "published", "quarantined", "excluded",
                                             "erased", "faces_total")}
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
<h2>Regions replaced per kind (face; text: plates, badges, signs)</h2>{_table(_kinds(summary.get("regions_per_kind")))}
<h2>Methods</h2>{_table(summary["methods"])}
<h2>Published outputs: encoding, verification detection</h2>{_table(summary.get("published_outputs", {}))}
<h2>Quarantine reasons</h2>{_table(summary["quarantine_reasons"])}
{_quality_html(summary.get("image_quality"))}
{_identity_html(summary.get("identity"), summary.get("reidentification"))}
{_accuracy_html(summary.get("accuracy_impact"))}
</body></html>
"""


def write_summary(summary: Mapping[str, Any], output: str, storage: Storage = DEFAULT_STORAGE) -> str:
    """Write summary.json and summary.html under ``<output>/report/``; returns the folder."""
    fs, root = storage.filesystem(output)
    folder = join(root, "report")
    write_atomic(fs, join(folder, "summary.json"),
                 json.dumps(summary, indent=2, sort_keys=True).encode())
    write_atomic(fs, join(folder, "summary.html"), render_html(summary).encode())
    return folder
