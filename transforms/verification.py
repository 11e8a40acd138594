"""Verify each output before it may be published: no face re-detected, no replaced face whose
identity status is ``matched`` (transforms/identity_evidence.py), no metadata left, the output decodes to the input's
dimensions. Any failure quarantines the record.

Synthetic faces are meant to be found by a detector. A face re-detected on a ``synthetic`` output
is not a leak only when all of these hold: the identity check ran on the record; the re-detected
box overlaps a replaced face's box (IoU >= ``SUBSTITUTE_IOU``), each replaced face explaining at
most one re-detection; and that replaced face's identity distance to its original is above the
identity threshold (a face not measured has no distance and excuses nothing). Any other
re-detected face above the verification score is residual.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import apache_beam as beam

from transforms.decode import ImageRejected, load_normalized
from transforms.failures import quarantine_failures
from transforms.identity import CHECKED, MATCH_THRESHOLD, FaceStatus
from transforms.metadata import remaining_metadata
from transforms.observability import timed
from transforms.records import TEXT, Face, Record

SUBSTITUTE_IOU = 0.4
# Methods that leave no original pixel inside a face's box.
GENERATED_METHODS = frozenset({"synthetic", "solid"})


def redetection_scores(replaced: tuple[Face, ...], found: tuple[Face, ...]) -> tuple[float, ...]:
    """Per replaced face, the best score of a face found on the output overlapping it (0: none)."""
    return tuple(max((f.score for f in found if r.iou(f) >= SUBSTITUTE_IOU), default=0.0) for r in replaced)


def in_generated_pixels(region: Face, record: Record) -> bool:
    """Whether ``region`` lies wholly inside the box of a face replaced by a method that leaves no
    original pixel there (``GENERATED_METHODS``: every pixel of the box is the generator's or the fill's),
    so nothing found in it can be the original's (text a synthetic face's features resemble)."""
    return any(method in GENERATED_METHODS and face.x1 <= region.x1 and face.y1 <= region.y1
               and region.x2 <= face.x2 and region.y2 <= face.y2
               for face, method in zip(record.faces, record.face_methods, strict=False))


def counted_regions(record: Record, verify_threshold: float) -> list[Face]:
    """What the output's search found that counts: faces at or above ``verify_threshold``, and
    text regions read there (``Face.counts_at``) that are not in generated pixels."""
    return [f for f in record.output_faces if f.counts_at(verify_threshold)
            and (f.kind != TEXT or not in_generated_pixels(f, record))]


def leaked_faces(record: Record, verify_threshold: float, identity_threshold: float) -> int:
    """Faces found on the output at or above ``verify_threshold`` that are not proven substitutes,
    and text regions found there that are not inside generated pixels (``in_generated_pixels``)."""
    found = [f for f in record.output_faces if f.counts_at(verify_threshold)]
    # A handler that reported a count but no boxes: nothing can be excused (fail closed).
    if len(found) != record.residual_faces:
        return max(record.residual_faces, len(found))
    found = counted_regions(record, verify_threshold)
    provable = record.method == "synthetic" and record.identity_check == CHECKED and \
        len(record.identity_distances) == len(record.faces)
    if not provable:
        return len(found)
    free = [i for i, d in enumerate(record.identity_distances) if d > identity_threshold]
    leaks = 0
    for face in sorted(found, key=lambda f: -f.score):
        best = max(free, key=lambda i: record.faces[i].iou(face), default=None)
        if best is not None and record.faces[best].iou(face) >= SUBSTITUTE_IOU:
            free.remove(best)
        else:
            leaks += 1
    return leaks


SECOND_PASS = "second_pass"  # the tagged output of records to replace again


def second_pass_record(record: Record, verify_threshold: float) -> Record:
    """The record to replace again: its source bytes, its faces plus those found on its output at
    or above ``verify_threshold`` that no replaced face explains (IoU < ``SUBSTITUTE_IOU``), and
    everything the replace and verify stages set cleared."""
    found = [f for f in counted_regions(record, verify_threshold)
             if not any(f.iou(r) >= SUBSTITUTE_IOU for r in record.faces)]
    return record.replace(
        data=record.source_data, source_data=b"", faces=record.faces + tuple(found), replace_pass=2,
        residual_faces=-1, output_faces=(), redetected_scores=(), verify_detection="", identity_vectors=b"",
        identity_statuses=(), identity_distances=(), escalations=(), output_same_pixels=False,
        notes=record.notes + (f"second_pass:{len(found)}_faces_found_on_output",))


class VerifyOutput(beam.DoFn):
    """Check a record's anonymized bytes; pass it on verified or quarantined with the reason.

    Expects ``residual_faces`` already set by the verification detector run. With ``second_pass``,
    a first-pass record with residual faces that are not substitutes and that carries its source
    bytes goes to the ``SECOND_PASS`` output instead (``second_pass_record``): those faces are
    replaced too, and the result verified again from the start; a residual face then quarantines it.
    """

    def __init__(self, max_pixels: int, verify_threshold: float = 0.9, identity_threshold: float = MATCH_THRESHOLD,
                 second_pass: bool = False) -> None:
        if identity_threshold < MATCH_THRESHOLD:
            raise ValueError(f"identity_threshold must be >= {MATCH_THRESHOLD}, got {identity_threshold}")
        self._max_pixels = max_pixels
        self._verify_threshold = verify_threshold
        self._identity_threshold = identity_threshold
        self._second_pass = second_pass

    @quarantine_failures("verify")
    def process(self, record: Record) -> Iterator[Record | beam.pvalue.TaggedOutput]:
        if record.is_quarantined:
            yield record
            return
        if record.residual_faces < 0:
            yield record.quarantine("verify:not_checked_for_faces")
            return
        record = record.replace(
            redetected_scores=redetection_scores(record.faces, record.output_faces),
            residual_faces=leaked_faces(record, self._verify_threshold, self._identity_threshold))
        if self._second_pass and record.residual_faces > 0 and record.replace_pass == 1 and record.source_data:
            yield beam.pvalue.TaggedOutput(SECOND_PASS, second_pass_record(record, self._verify_threshold))
            return
        record = record.replace(source_data=b"")
        if record.identity_check == CHECKED and FaceStatus.MATCHED in record.identity_statuses:
            yield record.quarantine("verify:identity_match")
            return
        if record.residual_faces > 0:
            yield record.quarantine("verify:residual_faces")
            return
        with timed("verify:checks"):
            checked = self._check(record)
        yield checked

    def _check(self, record: Record) -> Record:
        """Metadata left, decoding and dimensions of a record with no face left on its output."""
        try:
            leftover = remaining_metadata(record.data)
        except (ValueError, struct.error):
            return record.quarantine("verify:unreadable_output")
        if leftover:
            return record.replace(metadata_remaining=tuple(leftover)).quarantine("verify:metadata_remaining")
        try:
            image, _ = load_normalized(record.data, self._max_pixels)
        except ImageRejected as rejected:
            return record.quarantine(f"verify:output_{rejected.reason}")
        if image.size != (record.width, record.height):
            return record.quarantine("verify:dimensions_changed")
        return record.replace(output_sha256=hashlib.sha256(record.data).hexdigest())
