"""The Great Expectations suites, defined in code: one over each shard's manifest rows, one per run.

Every expectation carries ``meta["name"]`` (the short name that becomes a quarantine reason,
``gate:<name>``) and a ``description`` a steward can read in the Data Docs. Thresholds come from
the job config (``pipelines.settings.gate_thresholds_for``) and are recorded with every result.

Adding a run-level expectation (e.g. for an accuracy-impact or estimated-recall figure): put the
figure into the ``extra`` mapping given to ``run_figures`` and register a builder with
``@run_expectation("name", "what it checks")`` that returns a GX expectation, or ``None`` when the
figure is absent for this run (the expectation then does not apply).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.expectations.expectation import Expectation

from transforms.identity import FaceStatus
from transforms.records import LOW_SECURITY_METHODS, ShardSpec

PUBLISHED_ONLY = 'status == "published"'
# The run expectation about completeness (not privacy): failing it makes the run INCOMPLETE.
WITHHELD_EXPECTATION = "withheld_share_within_bound"
SIZE_BAND_NAMES = ("<20", "20-40", "40-80", ">=80")


@dataclass(frozen=True)
class GateThresholds:
    """The limits the gate applies; recorded with every validation result.

    Args:
        allow_low_security: whether reversible methods (pixelate) may be published.
        max_quarantine_share: the largest share of a shard's records that may be quarantined.
        reid_alpha: the shard fails when the one-sided binomial test of its rank-1
            re-identification rate against chance has a p-value under this
            (transforms/reidentification.py).
        same_dimensions: published outputs must have the input's dimensions (False when the
            policy resizes).
        max_withheld_share: the largest share of the run's input that may be withheld (run level:
            failing it fails the run as incomplete, it quarantines nothing).
    """

    allow_low_security: bool = False
    max_quarantine_share: float = 1.0
    reid_alpha: float = 0.001
    same_dimensions: bool = True
    max_withheld_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_quarantine_share <= 1.0:
            raise ValueError(f"max_quarantine_share: must be in [0, 1], got {self.max_quarantine_share!r}")
        if not (math.isfinite(self.reid_alpha) and 0.0 < self.reid_alpha <= 0.5):
            raise ValueError(f"reid_alpha: must be in (0, 0.5], got {self.reid_alpha!r}")
        if not 0.0 <= self.max_withheld_share <= 1.0:
            raise ValueError(f"max_withheld_share: must be in [0, 1], got {self.max_withheld_share!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def matched_faces(row: Mapping[str, Any]) -> int:
    """How many of a row's faces have the identity status ``matched``."""
    return sum(1 for status in row.get("face_identity_statuses") or () if status == FaceStatus.MATCHED)


def shard_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The columns the shard suite checks, one row per manifest row of the shard.

    Rows may carry gate-only facts from the commit (``output_decodes``, ``output_width``,
    ``output_height``); where they are absent, outputs count as not checked (fail closed).
    """
    def dims_match(row: Mapping[str, Any]) -> bool:
        width, height = row.get("output_width"), row.get("output_height")
        return width is not None and (width, height) == (row.get("width"), row.get("height"))

    data: dict[str, list[Any]] = {
        "record_id": [row.get("record_id") for row in rows],
        "shard_index": [row.get("shard_index") for row in rows],
        "status": [row.get("status") for row in rows],
        "reason": [row.get("reason") for row in rows],
        "method": [row.get("method") or "" for row in rows],
        "security_level": [row.get("security_level") or "" for row in rows],
        # Not checked (None) reads as -1, which the expectation rejects.
        "residual_faces": [-1 if row.get("residual_faces") is None else int(row["residual_faces"])
                           for row in rows],
        "metadata_remaining_count": [len(row.get("metadata_remaining") or ()) for row in rows],
        "output_decodes": [bool(row.get("output_decodes", False)) for row in rows],
        "dimensions_match": [dims_match(row) for row in rows],
        "is_quarantined": [1.0 if row.get("status") == "quarantined" else 0.0 for row in rows],
        "identity_matched_faces": [matched_faces(row) for row in rows],
        # The shard's rank-1 re-identification test (one value for the shard; NaN: no measured face).
        "shard_reid_p_value": [float(row["shard_reid_p_value"])
                               if isinstance(row.get("shard_reid_p_value"), int | float) else math.nan for row in rows],
    }
    return pd.DataFrame(data)


def _named(expectation: Expectation, name: str) -> Expectation:
    expectation.meta = {**(expectation.meta or {}), "name": name}
    return expectation


def expected_rows(spec: ShardSpec, rows: Sequence[Mapping[str, Any]]) -> int:
    """How many manifest rows the shard must have: its listed images, or its read records."""
    if spec.format == "images" and spec.input_uris:
        return len(spec.input_uris)
    indices = [int(row["shard_index"]) for row in rows if row.get("shard_index") is not None]
    return max(indices) + 1 if indices else 0


def shard_expectations(thresholds: GateThresholds, expected: int) -> list[Expectation]:
    """The per-shard suite: what must hold before a shard may be published."""
    items: list[Expectation] = [
        _named(gxe.ExpectTableRowCountToEqual(
            value=expected,
            description="Every record of the shard is accounted for (published + quarantined + excluded)."),
            "records_accounted_for"),
        _named(gxe.ExpectColumnValuesToBeInSet(
            column="status", value_set=["published", "quarantined", "excluded"],
            description="Every record is published, quarantined, or excluded (objection)."), "records_accounted_for"),
        _named(gxe.ExpectColumnValuesToBeUnique(
            column="record_id", description="No record appears twice."), "records_accounted_for"),
        _named(gxe.ExpectColumnValuesToBeBetween(
            column="residual_faces", min_value=0, max_value=0, row_condition=PUBLISHED_ONLY,
            condition_parser="pandas",
            description="No published image has a face re-detected on it (and every one was checked)."),
            "no_published_residual_faces"),
        _named(gxe.ExpectColumnValuesToBeBetween(
            column="metadata_remaining_count", min_value=0, max_value=0, row_condition=PUBLISHED_ONLY,
            condition_parser="pandas", description="No published image has metadata left."),
            "no_published_metadata"),
        _named(gxe.ExpectColumnValuesToBeInSet(
            column="output_decodes", value_set=[True], row_condition=PUBLISHED_ONLY, condition_parser="pandas",
            description="Every published image decodes."), "published_outputs_decode"),
    ]
    if thresholds.same_dimensions:
        items.append(_named(gxe.ExpectColumnValuesToBeInSet(
            column="dimensions_match", value_set=[True], row_condition=PUBLISHED_ONLY, condition_parser="pandas",
            description="Every published image has its input's dimensions."), "published_dimensions_unchanged"))
    if not thresholds.allow_low_security:
        items.append(_named(gxe.ExpectColumnValuesToNotBeInSet(
            column="method", value_set=sorted(LOW_SECURITY_METHODS), row_condition=PUBLISHED_ONLY,
            condition_parser="pandas",
            description="No reversible (low-security) method was used: the config does not allow it."),
            "no_low_security_methods"))
        items.append(_named(gxe.ExpectColumnValuesToNotBeInSet(
            column="security_level", value_set=["low"], row_condition=PUBLISHED_ONLY, condition_parser="pandas",
            description="No published record is marked low security."), "no_low_security_methods"))
    items.append(_named(gxe.ExpectColumnValuesToBeBetween(
        column="identity_matched_faces", min_value=0, max_value=0, row_condition=PUBLISHED_ONLY,
        condition_parser="pandas",
        description="No published image has a replaced face an attacker holding the original could pick out "
                    "(identity status 'matched')."), "no_published_identity_match"))
    items.append(_named(gxe.ExpectColumnValuesToBeBetween(
        column="shard_reid_p_value", min_value=thresholds.reid_alpha,
        description=f"The shard's rank-1 re-identification rate is not significantly above chance (one-sided "
                    f"exact binomial test, p >= {thresholds.reid_alpha:g}; where faces were measured)."),
        "reidentification_at_chance"))
    items.append(_named(gxe.ExpectColumnMeanToBeBetween(
        column="is_quarantined", min_value=0.0, max_value=thresholds.max_quarantine_share,
        description=f"At most {thresholds.max_quarantine_share:.0%} of the shard's records are quarantined."),
        "quarantine_share_within_bound"))
    return items


# ---- the run-level suite ----------------------------------------------------------------------

RunFigures = Mapping[str, Any]
RunExpectationBuilder = Callable[[RunFigures, GateThresholds], Expectation | None]


@dataclass(frozen=True)
class RunExpectation:
    """One registered run-level expectation: its name, what it checks, and its builder."""

    name: str
    description: str
    build: RunExpectationBuilder


RUN_EXPECTATIONS: list[RunExpectation] = []


def run_expectation(name: str, description: str) -> Callable[[RunExpectationBuilder], RunExpectationBuilder]:
    """Register a run-level expectation builder under ``name`` (see the module docstring)."""
    if not name or any(existing.name == name for existing in RUN_EXPECTATIONS):
        raise ValueError(f"name: run expectation {name!r} is empty or already registered")

    def register(build: RunExpectationBuilder) -> RunExpectationBuilder:
        RUN_EXPECTATIONS.append(RunExpectation(name, description, build))
        return build
    return register


def band_column(band: str) -> str:
    return f"faces_band_{band}"


def run_figures(rows: Sequence[Mapping[str, Any]], planned: Sequence[str],
                validations: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any],
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's figures (one row), from its manifest rows, planned shard ids and shard validations."""
    committed = {row["shard_id"] for row in rows}
    figures: dict[str, Any] = {
        "shards_planned": len(planned),
        "shards_committed": len(committed & set(planned)),
        "shards_gated": sum(1 for shard in planned if shard in validations),
        "shards_failed_gate": sum(1 for v in validations.values() if not v.get("passed")),
        "inputs": int(summary["inputs"]),
        "published": int(summary["published"]),
        "quarantined": int(summary["quarantined"]),
        "excluded": int(summary.get("excluded", 0)),
        "erased": int(summary.get("erased", 0)),
        "unaccounted_records": int(summary["inputs"]) - int(summary["published"]) - int(summary["quarantined"])
        - int(summary.get("excluded", 0)) - int(summary.get("erased", 0)),
        "duplicate_records": int(summary["duplicate_records"]),
        "withheld": int(summary.get("withheld", 0)),
        "withheld_share": float(summary.get("withheld_share", 0.0)),
    }
    for band, count in (summary.get("faces_per_size_band") or {}).items():
        figures[band_column(band)] = int(count)
    accuracy = summary.get("accuracy_impact")
    if accuracy and accuracy.get("top1_agreement", {}).get("value") is not None:
        figures["reference_top1_agreement"] = float(accuracy["top1_agreement"]["value"])
        figures["reference_min_top1_agreement"] = float(accuracy.get("min_top1_agreement") or 0.0)
    figures.update(extra or {})
    return figures


def _exact(column: str, value: float, description: str) -> Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=value, max_value=value,
                                             description=description)


@run_expectation("all_shards_committed", "Every planned shard has a committed manifest.")
def _all_committed(figures: RunFigures, _: GateThresholds) -> Expectation:
    return _exact("shards_committed", figures["shards_planned"], "Every planned shard has a committed manifest.")


@run_expectation("all_shards_gated", "Every planned shard has a gate validation result.")
def _all_gated(figures: RunFigures, _: GateThresholds) -> Expectation:
    return _exact("shards_gated", figures["shards_planned"], "Every planned shard has a gate validation result.")


@run_expectation("no_shard_failed_gate", "No shard failed its gate (failed shards are quarantined, not published).")
def _none_failed(figures: RunFigures, _: GateThresholds) -> Expectation:
    return _exact("shards_failed_gate", 0, "No shard failed its gate.")


@run_expectation("totals_consistent", "inputs = published + quarantined + excluded + erased.")
def _totals(figures: RunFigures, _: GateThresholds) -> Expectation:
    return _exact("unaccounted_records", 0,
                  "inputs = published + quarantined + excluded + erased: no record unaccounted for.")


@run_expectation("no_duplicate_records", "Each record appears once in the run's manifest.")
def _no_duplicates(figures: RunFigures, _: GateThresholds) -> Expectation:
    return _exact("duplicate_records", 0, "Each record appears once in the run's manifest.")


@run_expectation("faces_per_size_band_present", "The faces-per-size-band distribution is reported.")
def _bands(figures: RunFigures, _: GateThresholds) -> Expectation:
    return gxe.ExpectTableColumnsToMatchSet(
        column_set=[band_column(b) for b in SIZE_BAND_NAMES], exact_match=False,
        description="The faces-per-size-band distribution (<20, 20-40, 40-80, >=80 px) is reported.")


@run_expectation(WITHHELD_EXPECTATION,
                 "At most gate_max_withheld_share of the input is withheld (quarantined for a reason other than an "
                 "unreadable input).")
def _withheld(figures: RunFigures, thresholds: GateThresholds) -> Expectation:
    bound = thresholds.max_withheld_share
    return gxe.ExpectColumnValuesToBeBetween(
        column="withheld_share", min_value=0.0, max_value=bound,
        description=f"At most {bound:.0%} of the input records are withheld: quarantined for a reason other than "
                    "an unreadable input (gate_max_withheld_share). A run over it is incomplete, not unsafe.")


@run_expectation("reference_top1_agreement_at_least_bound",
                 "Top-1 agreement of the reference model on original vs anonymized is at least the bound.")
def _accuracy(figures: RunFigures, _: GateThresholds) -> Expectation | None:
    if "reference_top1_agreement" not in figures:
        return None  # no reference model configured for this run
    bound = figures["reference_min_top1_agreement"]
    return gxe.ExpectColumnValuesToBeBetween(
        column="reference_top1_agreement", min_value=bound, max_value=1.0,
        description=f"The reference model's top-1 prediction agrees on the original and the anonymized "
                    f"image for at least {bound:.0%} of the sampled records (gate_min_top1_agreement).")


def run_expectations(figures: RunFigures, thresholds: GateThresholds) -> list[Expectation]:
    """The run-level suite for these figures: every registered expectation that applies."""
    items: list[Expectation] = []
    for entry in RUN_EXPECTATIONS:
        expectation = entry.build(figures, thresholds)
        if expectation is not None:
            items.append(_named(expectation, entry.name))
    return items


def run_frame(figures: RunFigures) -> pd.DataFrame:
    return pd.DataFrame([dict(figures)])
