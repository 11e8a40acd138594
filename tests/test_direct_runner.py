"""pipelines/runners.py ``pipeline_runner``: the DirectRunner runs the job itself, never first trying
the PrismRunner (whose binary Beam downloads at run time)."""

from __future__ import annotations

import logging

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines.runners import pipeline_runner


@pytest.mark.parametrize("flags", [[], ["--runner=DirectRunner"], ["--runner=direct"]])
def test_the_direct_runner_does_not_try_prism(flags: list[str], caplog: pytest.LogCaptureFixture) -> None:
    options = PipelineOptions(flags)
    runner = pipeline_runner(options)
    assert runner is not None
    with caplog.at_level(logging.INFO, logger="apache_beam"):
        with beam.Pipeline(runner=runner, options=options) as pipeline:
            doubled = pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: 2 * x)
            assert_that(doubled, equal_to([2, 4, 6]))
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "Prism" not in messages and "prism" not in messages, messages


@pytest.mark.parametrize("runner", ["FlinkRunner", "PortableRunner", "DataflowRunner", "SparkRunner"])
def test_other_runners_are_left_to_beam(runner: str) -> None:
    assert pipeline_runner(PipelineOptions([f"--runner={runner}"])) is None
