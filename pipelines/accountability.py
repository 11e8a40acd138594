"""GDPR accountability of a run: the record of processing (Article 30) written to the audit log.

``anonymize run`` appends a ``run_started`` entry before any work and a ``run`` entry after it
(with the counts by status); the entries never hold exclusion identifiers, only their number and
a hash of the list, since the identifiers of people who objected are themselves personal data.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from pipelines.config import config_sha256, job_settings
from pipelines.options import LEGAL_BASES, SPECIAL_CATEGORY_CONDITIONS, AnonymizeOptions
from pipelines.settings import storage_for
from transforms.audit import append_entry, code_version
from transforms.exclusions import Exclusions
from transforms.identity import MODEL_NAME as IDENTITY_MODEL

ARTICLE_6 = {basis: f"Art. 6(1)({letter})" for basis, letter in zip(LEGAL_BASES, "abcdef", strict=True)}
ARTICLE_9 = {cond: f"Art. 9(2)({letter})" for cond, letter in zip(SPECIAL_CATEGORY_CONDITIONS, "abcdefghij",
                                                                   strict=True)}
IDENTIFIER_SETTINGS = ("exclude_source_uris", "exclude_subject_ids")
POLICY_KEYS = (
    "method", "allow_low_security", "box_margin", "blur_sigma_factor", "solid_color", "pixelate_blocks",
    "synthetic_generator", "synthetic_seed", "detector", "detector_extra", "detector_min_face_size",
    "centerface_threshold", "retinaface_threshold", "retinaface_scales",
    "detector_thresholds", "detector_score_threshold", "verify_score_threshold",
    "identity_check", "identity_threshold", "identity_min_face_size", "identity_reid_alpha", "identity_escalation",
    "synthetic_min_face_size", "synthetic_min_score", "synthetic_blend",
    "gate_max_quarantine_share", "gate_max_withheld_share", "max_image_pixels",
    "jpeg_quality", "reference_model", "gate_min_top1_agreement",
)


def recorded_settings(options: AnonymizeOptions) -> dict[str, Any]:
    """The job settings as they may be written down: no endpoint, no exclusion identifiers."""
    settings = job_settings(options) | {"s3_endpoint": None}
    for name in IDENTIFIER_SETTINGS:
        listed = [p for p in str(settings.get(name) or "").replace(",", "\n").splitlines() if p.strip()]
        settings[name] = f"{len(listed)} listed (not recorded)" if listed else ""
    return settings


def _list_hash(values: frozenset[str]) -> str:
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest() if values else ""


def processing_record(options: AnonymizeOptions, run_id: str, detectors: Mapping[str, Any],
                      exclusions: Exclusions) -> dict[str, Any]:
    """What Article 30 asks to be recorded about a run, from its options (no personal data)."""
    settings = recorded_settings(options)
    return {
        "run_id": run_id,
        "purpose": options.purpose,
        "legal_basis": options.legal_basis,
        "legal_basis_article": ARTICLE_6.get(options.legal_basis, ""),
        "biometric_processing": bool(options.biometric_processing),
        "special_category_condition": options.special_category_condition or None,
        "special_category_article": ARTICLE_9.get(options.special_category_condition) if
        options.biometric_processing else None,
        "controller": options.controller,
        "retention_days": options.retention_days or None,
        "input": options.input,
        "input_layout": {"input_format": options.input_format, "image_column": options.image_column},
        "output": options.output,
        "config_sha256": config_sha256(options),
        "policy": {key: settings.get(key) for key in POLICY_KEYS},
        "detectors": dict(detectors),
        "identity_model": IDENTITY_MODEL if options.identity_check else None,
        "exclusions": exclusions.summary() | {"source_uris_sha256": _list_hash(exclusions.source_uris),
                                              "subject_ids_sha256": _list_hash(exclusions.subject_ids)},
        "code": code_version(),
    }


def run_counts(manifest: pa.Table, run_id: str) -> dict[str, Any]:
    """Counts by status of the rows this run committed, and of the whole output."""
    status = manifest.column("status").to_pylist() if manifest.num_rows else []
    runs = manifest.column("run_id").to_pylist() if manifest.num_rows else []
    mine = collections.Counter(s for s, r in zip(status, runs, strict=True) if r == run_id)
    return {"this_run": dict(sorted(mine.items())), "output_total": dict(sorted(collections.Counter(status).items())),
            "records_this_run": sum(mine.values()), "records_output_total": len(status)}


def retention_until(retention_days: int | None, finished: datetime.datetime) -> str | None:
    """When the run's outputs must be gone (ISO time), or None without a retention period."""
    return (finished + datetime.timedelta(days=retention_days)).isoformat() if retention_days else None


def record_run_started(options: AnonymizeOptions, run_id: str, detectors: Mapping[str, Any],
                       exclusions: Exclusions, shards_planned: int, shards_skipped: int) -> dict[str, Any]:
    """Append the ``run_started`` entry: the record of processing, before any work."""
    payload = processing_record(options, run_id, detectors, exclusions) | {
        "shards_planned": shards_planned, "shards_skipped_as_committed": shards_skipped}
    return append_entry(options.output, "run_started", payload, storage_for(options), options.operator)


def record_run_finished(options: AnonymizeOptions, run_id: str, detectors: Mapping[str, Any],
                        exclusions: Exclusions, manifest: pa.Table, passed: bool | None,
                        error: str = "") -> dict[str, Any]:
    """Append the ``run`` entry: the record of processing with the counts by status."""
    now = datetime.datetime.now(datetime.UTC)
    payload = processing_record(options, run_id, detectors, exclusions) | {
        "finished_at": now.isoformat(), "retention_until": retention_until(options.retention_days, now),
        "counts": run_counts(manifest, run_id), "checks_passed": passed, "error": error or None}
    return append_entry(options.output, "run", payload, storage_for(options), options.operator)
