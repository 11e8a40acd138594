"""Run a suite over a pandas frame with Great Expectations (offline, ephemeral context)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from great_expectations.expectations.expectation import Expectation

LOG = logging.getLogger(__name__)


def validate_frame(suite_name: str, frame: pd.DataFrame, expectations: Sequence[Expectation],
                   meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``frame`` against ``expectations``; returns GX's result as a JSON-ready dict.

    Raises:
        ValueError: when ``suite_name`` is empty or there is no expectation.
    """
    if not suite_name:
        raise ValueError("suite_name: required")
    if not expectations:
        raise ValueError("expectations: at least one is required")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("manifest").add_dataframe_asset(suite_name)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame})
    suite = gx.ExpectationSuite(name=suite_name, meta=dict(meta or {}))
    for expectation in expectations:
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)
    result = batch.validate(suite)
    data: dict[str, Any] = result.to_json_dict()
    data.setdefault("meta", {})
    data["meta"].update({"expectation_suite_meta": dict(meta or {})})
    data["meta"].pop("batch_spec", None)  # holds the whole dataframe; the rows are in the manifest
    # Plain JSON types (GX leaves numpy scalars in observed values; its renderers reject them).
    plain: dict[str, Any] = json.loads(json.dumps(data, default=_plain))
    return plain


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def failed_names(result: Mapping[str, Any]) -> list[str]:
    """The names (``meta.name``) of the expectations that failed, in suite order, without repeats."""
    names: list[str] = []
    for item in result.get("results", []):
        if item.get("success"):
            continue
        config = item.get("expectation_config") or {}
        name = (config.get("meta") or {}).get("name") or config.get("type", "unknown")
        if name not in names:
            names.append(name)
    return names
