"""Verify each output before it may be published: no face re-detected, no metadata left,
the output decodes to the input's dimensions. Any failure quarantines the record."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import apache_beam as beam

from transforms.decode import ImageRejected, load_normalized
from transforms.metadata import remaining_metadata
from transforms.records import Record


class VerifyOutput(beam.DoFn):
    """Check a record's anonymized bytes; pass it on verified or quarantined with the reason.

    Expects ``residual_faces`` already set by the verification detector run.
    """

    def __init__(self, max_pixels: int) -> None:
        self._max_pixels = max_pixels

    def process(self, record: Record) -> Iterator[Record]:
        if record.is_quarantined:
            yield record
            return
        if record.residual_faces < 0:
            yield record.quarantine("verify:not_checked_for_faces")
            return
        if record.residual_faces > 0:
            yield record.quarantine("verify:residual_faces")
            return
        try:
            leftover = remaining_metadata(record.data)
        except (ValueError, struct.error):
            yield record.quarantine("verify:unreadable_output")
            return
        if leftover:
            yield record.replace(metadata_remaining=tuple(leftover)).quarantine(
                "verify:metadata_remaining")
            return
        try:
            image, _ = load_normalized(record.data, self._max_pixels)
        except ImageRejected as rejected:
            yield record.quarantine(f"verify:output_{rejected.reason}")
            return
        if image.size != (record.width, record.height):
            yield record.quarantine("verify:dimensions_changed")
            return
        yield record.replace(output_sha256=hashlib.sha256(record.data).hexdigest())
