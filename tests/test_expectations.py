"""The Great Expectations suites on hand-made manifest rows: each expectation passes and fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from expectations.datadocs import render_validation_page
from expectations.gate import GxShardGate, gate_shard, read_validations
from expectations.suites import (
    RUN_EXPECTATIONS,
    GateThresholds,
    run_expectation,
    run_expectations,
    run_figures,
    run_frame,
)
from expectations.validate import failed_names, validate_frame
from transforms.records import ShardSpec

SPEC = ShardSpec("images-000000", "images", tuple(f"/in/{i}.jpg" for i in range(4)),
                 tuple(f"{i}.jpg" for i in range(4)), "data")


def _rows(n: int = 4) -> list[dict[str, Any]]:
    return [{
        "record_id": f"r{i}", "shard_id": SPEC.shard_id, "shard_index": i, "status": "published", "reason": None,
        "width": 64, "height": 48, "output_decodes": True, "output_width": 64, "output_height": 48,
        "method": "gaussian", "security_level": "standard", "residual_faces": 0, "metadata_remaining": [],
        "faces": [],
    } for i in range(n)]


def _quarantine(row: dict[str, Any]) -> None:
    row.update(status="quarantined", reason="decode:undecodable", residual_faces=None, output_decodes=False,
               output_width=None, output_height=None)


def _lost(rows: list[dict[str, Any]]) -> None:
    del rows[-1]


def _duplicate(rows: list[dict[str, Any]]) -> None:
    rows[1]["record_id"] = rows[0]["record_id"]


def _residual(rows: list[dict[str, Any]]) -> None:
    rows[2]["residual_faces"] = 1


def _unchecked(rows: list[dict[str, Any]]) -> None:
    rows[2]["residual_faces"] = None


def _metadata(rows: list[dict[str, Any]]) -> None:
    rows[0]["metadata_remaining"] = ["EXIF:GPSLatitude"]


def _undecodable(rows: list[dict[str, Any]]) -> None:
    rows[3].update(output_decodes=False, output_width=None, output_height=None)


def _resized(rows: list[dict[str, Any]]) -> None:
    rows[3]["output_width"] = 32


def _pixelated(rows: list[dict[str, Any]]) -> None:
    rows[1].update(method="pixelate", security_level="low")


def _identity(rows: list[dict[str, Any]]) -> None:
    rows[0]["face_identity_statuses"] = ["measured_no_match", "unmeasurable_small"]
    rows[1]["face_identity_statuses"] = ["removed_by_construction", "matched"]  # still picked out


def _reidentified(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["shard_reid_p_value"] = 1e-6  # the shard's faces are picked out far above chance


def _many_quarantined(rows: list[dict[str, Any]]) -> None:
    _quarantine(rows[0])
    _quarantine(rows[1])


def test_a_clean_shard_passes_and_a_quarantined_record_is_fine() -> None:
    rows = _rows()
    _quarantine(rows[3])  # quarantined records carry no output facts: not checked as published
    record = gate_shard(SPEC, rows, GateThresholds(max_quarantine_share=0.5), run_id="run-1")
    assert record["passed"] is True, record["failed"]
    assert record["thresholds"]["max_quarantine_share"] == 0.5
    assert record["gx_result"]["statistics"]["evaluated_expectations"] >= 9


@pytest.mark.parametrize(("breaks", "expected"), [
    (_lost, "records_accounted_for"),
    (_duplicate, "records_accounted_for"),
    (_residual, "no_published_residual_faces"),
    (_unchecked, "no_published_residual_faces"),
    (_metadata, "no_published_metadata"),
    (_undecodable, "published_outputs_decode"),
    (_resized, "published_dimensions_unchanged"),
    (_pixelated, "no_low_security_methods"),
    (_identity, "no_published_identity_match"),
    (_reidentified, "reidentification_at_chance"),
    (_many_quarantined, "quarantine_share_within_bound"),
])
def test_each_shard_expectation_fails_on_its_case(breaks: Callable[[list[dict[str, Any]]], None],
                                                  expected: str) -> None:
    rows = _rows()
    breaks(rows)
    record = gate_shard(SPEC, rows, GateThresholds(max_quarantine_share=0.25))
    assert record["passed"] is False
    assert expected in record["failed"], record["failed"]


def test_thresholds_from_the_config_change_the_verdict() -> None:
    rows = _rows()
    _pixelated(rows)
    for row in rows:
        row["shard_reid_p_value"] = 0.004
    refused = gate_shard(SPEC, rows, GateThresholds(allow_low_security=True, reid_alpha=0.01))
    assert refused["failed"] == ["reidentification_at_chance"]
    allowed = gate_shard(SPEC, rows, GateThresholds(allow_low_security=True, reid_alpha=0.001))
    assert allowed["passed"] is True, allowed["failed"]
    assert allowed["thresholds"]["reid_alpha"] == 0.001


def test_identity_expectations_do_not_apply_without_measured_faces() -> None:
    rows = _rows()
    for row in rows:
        row["face_identity_statuses"] = ["unmeasurable_small", "unmeasurable_no_face"]
        row["shard_reid_p_value"] = None
    _quarantine(rows[0])
    rows[0]["face_identity_statuses"] = ["matched"]  # quarantined: not published, not gated
    record = gate_shard(SPEC, rows, GateThresholds(max_quarantine_share=0.5))
    assert record["passed"] is True, record["failed"]


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_quarantine_share"):
        GateThresholds(max_quarantine_share=1.5)
    with pytest.raises(ValueError, match="reid_alpha"):
        GateThresholds(reid_alpha=0.0)
    with pytest.raises(ValueError, match="output"):
        GxShardGate(GateThresholds(), "")


def test_the_gate_keeps_its_result_and_names_failures(tmp_path: Path) -> None:
    rows = _rows()
    _residual(rows)
    verdict = GxShardGate(GateThresholds(), str(tmp_path), run_id="run-1")(SPEC, rows)
    assert verdict.failed == ("no_published_residual_faces",)
    kept = read_validations(str(tmp_path))[SPEC.shard_id]
    assert kept["passed"] is False and kept["run_id"] == "run-1"
    assert json.loads((tmp_path / "report" / "validations" / f"{SPEC.shard_id}.json").read_text()) == kept


def _summary(**changes: Any) -> dict[str, Any]:
    summary = {"inputs": 4, "published": 4, "quarantined": 0, "duplicate_records": 0,
               "faces_per_size_band": {"<20": 0, "20-40": 1, "40-80": 2, ">=80": 0}}
    summary.update(changes)
    return summary


def _run_failures(figures: dict[str, Any]) -> list[str]:
    result = validate_frame("run", run_frame(figures), run_expectations(figures, GateThresholds()))
    return failed_names(result)


def test_run_suite_passes_on_a_complete_run() -> None:
    rows = _rows()
    figures = run_figures(rows, [SPEC.shard_id], {SPEC.shard_id: {"passed": True}}, _summary())
    assert _run_failures(figures) == []


@pytest.mark.parametrize(("planned", "validations", "summary", "expected"), [
    (["a", "images-000000"], {"a": {"passed": True}, SPEC.shard_id: {"passed": True}}, _summary(),
     "all_shards_committed"),
    ([SPEC.shard_id], {}, _summary(), "all_shards_gated"),
    ([SPEC.shard_id], {SPEC.shard_id: {"passed": False}}, _summary(), "no_shard_failed_gate"),
    ([SPEC.shard_id], {SPEC.shard_id: {"passed": True}}, _summary(published=3), "totals_consistent"),
    ([SPEC.shard_id], {SPEC.shard_id: {"passed": True}}, _summary(duplicate_records=1), "no_duplicate_records"),
    ([SPEC.shard_id], {SPEC.shard_id: {"passed": True}}, _summary(faces_per_size_band={}),
     "faces_per_size_band_present"),
    ([SPEC.shard_id], {SPEC.shard_id: {"passed": True}}, _summary(accuracy_impact={
        "top1_agreement": {"value": 0.4}, "min_top1_agreement": 0.5}), "reference_top1_agreement_at_least_bound"),
])
def test_each_run_expectation_fails_on_its_case(planned: list[str], validations: dict[str, Any],
                                                summary: dict[str, Any], expected: str) -> None:
    figures = run_figures(_rows(), planned, validations, summary)
    assert expected in _run_failures(figures)


def test_accuracy_expectation_applies_only_with_a_reference_model() -> None:
    valid = {SPEC.shard_id: {"passed": True}}
    without = run_figures(_rows(), [SPEC.shard_id], valid, _summary())
    assert "reference_top1_agreement" not in without and _run_failures(without) == []
    good = run_figures(_rows(), [SPEC.shard_id], valid, _summary(accuracy_impact={
        "top1_agreement": {"value": 0.8}, "min_top1_agreement": 0.5}))
    assert good["reference_top1_agreement"] == 0.8 and _run_failures(good) == []


def test_a_run_expectation_is_added_by_registering_it() -> None:
    import great_expectations.expectations as gxe

    @run_expectation("test_recall_floor", "Estimated recall is at least 0.9 (where estimated).")
    def _recall(figures: Any, _: GateThresholds) -> Any:
        if figures.get("estimated_recall") is None:
            return None
        return gxe.ExpectColumnValuesToBeBetween(column="estimated_recall", min_value=0.9)

    try:
        base = run_figures(_rows(), [SPEC.shard_id], {SPEC.shard_id: {"passed": True}}, _summary())
        assert _run_failures(base) == []  # the figure is absent: the expectation does not apply
        assert _run_failures({**base, "estimated_recall": 0.7}) == ["test_recall_floor"]
        with pytest.raises(ValueError, match="already registered"):
            run_expectation("test_recall_floor", "again")
    finally:
        RUN_EXPECTATIONS[:] = [e for e in RUN_EXPECTATIONS if e.name != "test_recall_floor"]


def test_data_docs_page_renders_the_failure_and_needs_no_network(tmp_path: Path) -> None:
    rows = _rows()
    _metadata(rows)
    record = gate_shard(SPEC, rows, GateThresholds())
    page = render_validation_page(record["gx_result"])
    assert "No published image has metadata left." in page and "Failed" in page
    assert "http://" not in page and "https://" not in page
    assert 'href="../index.html"' in page
