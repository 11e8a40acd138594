"""Stage slices on Beam's TestPipeline: decode -> detect -> replace -> re-detect -> verify."""

from __future__ import annotations

import hashlib

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from tests.fakes import FixedBoxesFactory
from tests.helpers import jpeg_bytes
from transforms.decode import DecodeAndNormalise
from transforms.detection import FaceDetectionHandler
from transforms.records import Record
from transforms.replacement import ReplaceFaces, ReplacementPolicy
from transforms.verification import VerifyOutput

BOX = (10.0, 10.0, 40.0, 44.0, 0.99)


def _record(name: str, data: bytes) -> Record:
    return Record("s", 0, name, f"mem://{name}", name, hashlib.sha256(data).hexdigest(), data)


def _inputs() -> list[Record]:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 80, 3), np.uint8))
    return [_record("good", jpeg_bytes(image)), _record("empty", b""), _record("wide", jpeg_bytes(
        Image.new("RGB", (77, 30), (9, 9, 9))))]


def _summary(record: Record) -> tuple[str, str, str, int]:
    return record.record_id, record.status, record.reason, len(record.faces)


def test_decode_and_detect_slice() -> None:
    with TestPipeline() as pipeline:
        out = (pipeline | beam.Create(_inputs())
               | beam.ParDo(DecodeAndNormalise(10**6, 1))
               | RunInference(FaceDetectionHandler(FixedBoxesFactory([BOX], raise_on_width=77), 4, 10**6))
               | beam.Map(_summary))
        assert_that(out, equal_to([
            ("good", "", "", 1), ("empty", "quarantined", "decode:empty_file", 0),
            ("wide", "quarantined", "detect:detector_error:RuntimeError", 0)]))


def test_replace_and_verify_slice_quarantines_a_face_found_again() -> None:
    def verify_summary(record: Record) -> tuple[str, str, int, bool]:
        return record.record_id, record.reason, record.residual_faces, bool(record.output_sha256)

    good = [r for r in _inputs() if r.record_id == "good"]
    for verifier, expected in ((FixedBoxesFactory(()), ("good", "", 0, True)),
                               (FixedBoxesFactory([BOX]), ("good", "verify:residual_faces", 1, False))):
        with TestPipeline() as pipeline:
            out = (pipeline | beam.Create(good)
                   | beam.ParDo(DecodeAndNormalise(10**6, 1))
                   | "Detect" >> RunInference(FaceDetectionHandler(FixedBoxesFactory([BOX]), 4, 10**6))
                   | beam.ParDo(ReplaceFaces(ReplacementPolicy(), 10**6, 95))
                   | "Redetect" >> RunInference(FaceDetectionHandler(verifier, 4, 10**6, mode="verify"))
                   | beam.ParDo(VerifyOutput(10**6))
                   | beam.Map(verify_summary))
            assert_that(out, equal_to([expected]))
