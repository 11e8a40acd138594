"""The Parquet manifest: one row per input record, published or quarantined, with the reason.

Each shard's manifest is ``<output>/manifest/<shard_id>.parquet``, written last, atomically: it
is the shard's commit marker. Together the files form one Parquet dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from transforms.identity import CHECKED
from transforms.identity import MODEL_NAME as IDENTITY_MODEL
from transforms.records import EXCLUDED, QUARANTINED, UNREAD_TEXT, Record, ShardSpec
from transforms.storage import DEFAULT_STORAGE, Storage, join, write_atomic

FACE_TYPE = pa.struct([
    ("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32()),
    ("score", pa.float32()), ("detector", pa.string()),
])
DETECTOR_TYPE = pa.struct([
    ("name", pa.string()), ("version", pa.string()), ("weights_sha256", pa.string()),
])
MANIFEST_SCHEMA = pa.schema([
    ("record_id", pa.string()),
    ("shard_id", pa.string()),
    ("shard_index", pa.int32()),
    ("source_uri", pa.string()),
    ("subject_id", pa.string()),
    ("relative_path", pa.string()),
    ("source_sha256", pa.string()),
    ("output_uri", pa.string()),
    ("output_sha256", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("source_format", pa.string()),
    ("faces", pa.list_(FACE_TYPE)),
    ("face_count", pa.int32()),
    # Per region, in ``faces`` order: ``face``, or ``text`` (a licence plate, badge or sign found by the
    # text detector under ``redact: faces,text``). ``face_count`` counts regions of both kinds.
    ("face_kinds", pa.list_(pa.string())),
    ("method", pa.string()),
    # Per face, in ``faces`` order: the method that replaced it, and why it is not ``method`` ("" when
    # it is; small / low_confidence / unmeasurable / text: blurred under synthetic, text also under pixelate;
    # escalated).
    ("face_methods", pa.list_(pa.string())),
    ("face_method_reasons", pa.list_(pa.string())),
    ("security_level", pa.string()),
    ("residual_faces", pa.int32()),
    ("metadata_removed", pa.list_(pa.string())),
    ("metadata_remaining", pa.list_(pa.string())),
    ("pixel_change", pa.float32()),
    # Identity evidence, per face in the order of ``faces``: its status (identity.FaceStatus), its
    # distance to the original face (dlib embedding; NaN where not measured), and the best score of
    # a face re-detected on the output over it (0: none).
    ("identity_check", pa.string()),
    ("identity_model", pa.string()),
    ("face_identity_statuses", pa.list_(pa.string())),
    ("face_identity_distances", pa.list_(pa.float32())),
    ("face_escalations", pa.list_(pa.int8())),
    ("min_identity_distance", pa.float32()),
    # The shard's rank-1 re-identification test (transforms/reidentification.py): this record's
    # measured faces that were picked out (hits) of its probes, the shard's gallery of originals,
    # and the shard's p-value (the same on every row of the shard).
    ("identity_rank1_hits", pa.int32()),
    ("identity_rank1_probes", pa.int32()),
    ("identity_rank1_gallery", pa.int32()),
    ("shard_reid_p_value", pa.float64()),
    ("face_redetected_scores", pa.list_(pa.float32())),
    # 1, or 2 when verification found faces on the first output and they were replaced too
    # (those faces are at the end of ``faces``).
    ("replace_passes", pa.int8()),
    # "reencoded" from pixels, or "stripped": a JPEG with no face replaced, compressed data kept.
    ("output_encoding", pa.string()),
    # "ran": the verification detector searched the output; "reused": the output decodes to the
    # very pixels the detect stage searched, whose faces stand (same detector, same pixels).
    ("verify_detection", pa.string()),
    # Text regions the verify stage found on the output but could not read (UNREAD_TEXT: they do
    # not count as residual; transforms/detection/text_reading.py); null when the output was not searched.
    ("unread_text_regions", pa.int32()),
    ("generator", pa.string()),
    ("psnr", pa.float32()),
    ("ssim", pa.float32()),
    ("psnr_outside_faces", pa.float32()),
    ("ssim_outside_faces", pa.float32()),
    ("reference_label", pa.int32()),
    ("reference_top5_original", pa.list_(pa.int32())),
    ("reference_top5_anonymized", pa.list_(pa.int32())),
    ("reference_top1_prob_original", pa.float32()),
    ("reference_top1_prob_anonymized", pa.float32()),
    ("detector", DETECTOR_TYPE),
    ("run_id", pa.string()),
    ("config_sha256", pa.string()),
    ("processed_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class RunInfo:
    """What every manifest row of a run shares (``detector``, the detect one), and the detector that
    re-checked the outputs."""

    run_id: str
    config_sha256: str
    detector: Mapping[str, str]
    verify_detector: Mapping[str, str] = field(default_factory=dict)


def _measured(value: float) -> float | None:
    """A metric for the manifest: None when not measured (-1) or undefined (NaN)."""
    return None if value != value or value == -1.0 else float(value)


def manifest_row(record: Record, output_uri: str | None, run: RunInfo,
                 processed_at: Any) -> dict[str, Any]:
    """The manifest row of one record. Quarantined rows never carry an output."""
    published = output_uri is not None and not record.is_quarantined
    return {
        "record_id": record.record_id,
        "shard_id": record.shard_id,
        "shard_index": record.index,
        "source_uri": record.source_uri,
        "subject_id": record.subject_id or None,
        "relative_path": record.relative_path,
        "source_sha256": record.source_sha256 or None,
        "output_uri": output_uri if published else None,
        "output_sha256": record.output_sha256 if published else None,
        "status": "published" if published else (EXCLUDED if record.is_excluded else QUARANTINED),
        "reason": record.reason or None,
        "width": record.width or None,
        "height": record.height or None,
        "source_format": record.source_format or None,
        "faces": [face.as_row() for face in record.faces],
        "face_count": len(record.faces),
        "face_kinds": [face.kind for face in record.faces],
        "method": record.method or None,
        "face_methods": list(record.face_methods) or None,
        "face_method_reasons": list(record.face_method_reasons) or None,
        "security_level": record.security_level or None,
        "residual_faces": record.residual_faces if record.residual_faces >= 0 else None,
        "unread_text_regions": sum(face.detector == UNREAD_TEXT for face in record.output_faces)
        if record.residual_faces >= 0 else None,
        "metadata_removed": list(record.metadata_removed),
        "metadata_remaining": list(record.metadata_remaining),
        "pixel_change": record.pixel_change if record.pixel_change >= 0 else None,
        "identity_check": record.identity_check or None,
        "identity_model": IDENTITY_MODEL if record.identity_check == "checked" else None,
        "face_identity_statuses": list(record.identity_statuses) or None,
        "face_identity_distances": list(record.identity_distances) or None,
        "face_escalations": list(record.escalations) or None,
        # Over the measured faces; every face's distance (NaN: not measured) is in the list above.
        "min_identity_distance": min(measured) if (measured := [
            d for d in record.identity_distances if math.isfinite(d)]) else None,
        **({"identity_rank1_hits": record.identity_rank1_hits, "identity_rank1_probes": record.identity_rank1_probes,
            "identity_rank1_gallery": record.identity_rank1_gallery,
            "shard_reid_p_value": record.reid_p_value if math.isfinite(record.reid_p_value) else None}
           if record.identity_check == CHECKED else {}),
        "face_redetected_scores": list(record.redetected_scores) or None,
        "replace_passes": record.replace_pass if record.method else None,
        "output_encoding": record.output_encoding or None,
        "verify_detection": record.verify_detection or None,
        "generator": record.generator or None,
        **{name: _measured(getattr(record, name))
           for name in ("psnr", "ssim", "psnr_outside_faces", "ssim_outside_faces")},
        "reference_label": record.reference_label if record.reference_top5_original and
        record.reference_label >= 0 else None,
        "reference_top5_original": list(record.reference_top5_original) or None,
        "reference_top5_anonymized": list(record.reference_top5_anonymized) or None,
        "reference_top1_prob_original": _measured(record.reference_top1_prob_original),
        "reference_top1_prob_anonymized": _measured(record.reference_top1_prob_anonymized),
        "detector": dict(run.detector),
        "run_id": run.run_id,
        "config_sha256": run.config_sha256,
        "processed_at": processed_at,
    }


def manifest_path(output_root: str, shard_id: str) -> str:
    return join(output_root, "manifest", f"{shard_id}.parquet")


# The shard's plan (what it was cut from the input as) rides in the manifest's Parquet metadata,
# so a committed shard is known by its contents, not only by its number.
PLAN_KEY = b"anonymize.shard_plan"


def shard_plan(spec: ShardSpec) -> dict[str, Any]:
    """The planned record list of a shard and its SHA-256: what a commit of it stands for."""
    body = {"format": spec.format, "input_uris": list(spec.input_uris),
            "relative_paths": list(spec.relative_paths), "output_name": spec.output_name,
            "image_column": spec.image_column}
    return body | {"sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()}


def write_manifest(rows: Sequence[Mapping[str, Any]], output: str, shard_id: str,
                   storage: Storage = DEFAULT_STORAGE, plan: Mapping[str, Any] | None = None) -> str:
    """Write one shard's manifest atomically, with its plan (``shard_plan``) when given; returns its path."""
    schema = MANIFEST_SCHEMA if plan is None else MANIFEST_SCHEMA.with_metadata(
        {PLAN_KEY: json.dumps(dict(plan), sort_keys=True).encode()})
    table = pa.Table.from_pylist(list(rows), schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    fs, root = storage.filesystem(output)
    path = manifest_path(root, shard_id)
    write_atomic(fs, path, buffer.getvalue())
    return path


def read_shard_plan(output: str, shard_id: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """The plan a committed shard was written for. A manifest written before plans were recorded
    gets one derived from its rows (input URIs only, ``sha256`` empty)."""
    fs, root = storage.filesystem(output)
    data = io.BytesIO(fs.cat_file(manifest_path(root, shard_id)))
    metadata = pq.read_schema(data).metadata or {}
    if PLAN_KEY in metadata:
        return dict(json.loads(metadata[PLAN_KEY]))
    rows = sorted(pq.read_table(data, columns=["source_uri", "shard_index"]).to_pylist(),
                  key=lambda r: r["shard_index"])
    uris = list(dict.fromkeys(str(r["source_uri"]).split("#", 1)[0] for r in rows))
    return {"input_uris": uris, "sha256": ""}


def plan_matches(committed: Mapping[str, Any], spec: ShardSpec) -> bool:
    """Whether a committed shard's plan is ``spec``'s (the same records, cut the same way)."""
    if committed.get("sha256"):
        return bool(committed["sha256"] == shard_plan(spec)["sha256"])
    return list(committed.get("input_uris") or []) == list(spec.input_uris)


def committed_shards(output: str, storage: Storage = DEFAULT_STORAGE) -> set[str]:
    """Shard ids whose manifest exists, i.e. that were committed."""
    fs, root = storage.filesystem(output)
    folder = join(root, "manifest")
    if not fs.exists(folder):
        return set()
    return {p.rsplit("/", 1)[-1][: -len(".parquet")]
            for p in fs.ls(folder, detail=False) if p.endswith(".parquet")}


def read_shard_rows(output: str, shard_id: str, storage: Storage = DEFAULT_STORAGE) -> list[dict[str, Any]]:
    """The manifest rows of one committed shard."""
    fs, root = storage.filesystem(output)
    return pq.read_table(io.BytesIO(fs.cat_file(manifest_path(root, shard_id))), schema=MANIFEST_SCHEMA).to_pylist()


def changed_shards(shards: Sequence[ShardSpec], output: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, str]:
    """Committed shards whose plan is not the input's now: shard id -> what changed."""
    planned = {spec.shard_id: spec for spec in shards}
    changed: dict[str, str] = {}
    for shard_id in sorted(committed_shards(output, storage)):
        committed = read_shard_plan(output, shard_id, storage)
        old = list(committed.get("input_uris") or [])
        spec = planned.get(shard_id)
        if spec is None:
            changed[shard_id] = f"is no longer a shard of the input (it was cut from {len(old)} input file(s))"
        elif not plan_matches(committed, spec):
            added, gone = set(spec.input_uris) - set(old), set(old) - set(spec.input_uris)
            changed[shard_id] = (f"was committed for other input files ({len(added)} now in it that were not, "
                                 f"{len(gone)} in it then that are not now)" if added or gone
                                 else "was committed for the same files cut or named differently")
    return changed


def read_manifests(output: str, storage: Storage = DEFAULT_STORAGE) -> pa.Table:
    """All manifest rows of an output, as one table (empty if none)."""
    fs, root = storage.filesystem(output)
    folder = join(root, "manifest")
    files = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".parquet")) \
        if fs.exists(folder) else []
    tables = [pq.read_table(io.BytesIO(fs.cat_file(p)), schema=MANIFEST_SCHEMA) for p in files]
    if not tables:
        return MANIFEST_SCHEMA.empty_table()
    return pa.concat_tables(tables)
