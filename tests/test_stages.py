"""Stage slices on Beam's TestPipeline: decode -> detect -> replace -> re-detect -> verify."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

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
from transforms.replace_stage import ReplaceFaces
from transforms.replacement import ReplacementPolicy
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


# --- Face-less images: kept as they are, verified by the detection run on the same pixels -------

def _stage(record: Record, replace: ReplaceFaces, detector: FixedBoxesFactory, verifier: FixedBoxesFactory,
           reuse: bool = True, verify_threshold: float = 0.9) -> Record:
    """Decode, detect, replace and verify one record, calling each stage directly."""
    (record,) = DecodeAndNormalise(10**6, 1).process(record)
    (record,) = FaceDetectionHandler(detector, 4, 10**6).run_inference([record], detector())
    replace.setup()
    (record,) = replace.process(record)
    handler = FaceDetectionHandler(verifier, 4, 10**6, mode="verify", verify_threshold=verify_threshold,
                                   reuse_same_pixels=reuse)
    (record,) = handler.run_inference([record], verifier())
    (record,) = VerifyOutput(10**6, verify_threshold).process(record)
    return record


def _faceless_jpeg(orientation: int = 1) -> bytes:
    image = Image.fromarray(np.random.default_rng(8).integers(0, 255, (48, 64, 3), np.uint8))
    exif = Image.Exif()
    exif[0x013B] = "Jane Example"  # Artist
    exif[0x0112] = orientation
    return jpeg_bytes(image, exif=exif.tobytes(), comment=b"secret")


def test_faceless_jpeg_keeps_its_compressed_data_and_verification_reuses_detection() -> None:
    from transforms.metadata import remaining_metadata, strip_jpeg_metadata

    source = _faceless_jpeg()
    record = _stage(_record("plain", source), ReplaceFaces(ReplacementPolicy(), 10**6, 95),
                    FixedBoxesFactory(()), FixedBoxesFactory([BOX]))
    assert (record.status, record.output_encoding, record.output_same_pixels, record.verify_detection) == \
        ("", "stripped", True, "reused")
    assert record.data == strip_jpeg_metadata(source) and remaining_metadata(record.data) == []
    assert "EXIF:Artist" in record.metadata_removed
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(record.data))),
                          np.asarray(Image.open(io.BytesIO(source))))
    assert (record.pixel_change, record.psnr, record.ssim) == (0.0, 100.0, 1.0)


def test_faces_found_below_the_replace_threshold_still_count_when_detection_is_reused() -> None:
    # Not replaced (0.6 < 0.7), so the pixels stay; verification at 0.5 must still see the face.
    weak = (10.0, 10.0, 40.0, 44.0, 0.6)
    record = _stage(_record("weak", _faceless_jpeg()), ReplaceFaces(ReplacementPolicy(), 10**6, 95),
                    FixedBoxesFactory([weak]), FixedBoxesFactory(()), verify_threshold=0.5)
    assert (record.output_encoding, record.verify_detection) == ("stripped", "reused")
    assert (record.status, record.reason, record.residual_faces) == ("quarantined", "verify:residual_faces", 1)


def _rgb_jpegs() -> dict[str, bytes]:
    """RGB-coded JPEGs: Adobe transform 0 and component ids 'R', 'G', 'B' (what libjpeg writes for
    RGB), the Adobe marker alone (ids 1, 2, 3), and the ids alone (no Adobe marker)."""
    from transforms.metadata import jpeg_parts

    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (48, 64, 3), np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, keep_rgb=True)
    both = buffer.getvalue()
    assert b"Adobe" in both and b"\x03R\x11\x00G\x11\x00B\x11\x00" in both
    numbered = both.replace(b"\x03R\x11\x00G\x11\x00B\x11\x00", b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00")
    numbered = numbered.replace(b"\x03R\x00G\x00B\x00", b"\x03\x01\x00\x02\x00\x03\x00")  # the scan's selectors
    adobe = [(start, end) for marker, start, end in jpeg_parts(both) if marker == 0xEE]
    ids_only = b"".join(both[s:e] for m, s, e in jpeg_parts(both) if (s, e) not in adobe)
    return {"rgb": both, "rgb_adobe_only": numbered, "rgb_ids_only": ids_only}


def test_changed_pixels_are_reencoded_or_spliced_and_detected_again() -> None:
    cases = {
        **{name: (data, {}, (), "reencoded", False) for name, data in _rgb_jpegs().items()},
        "rotated": (_faceless_jpeg(orientation=6), {}, (), "reencoded", False),  # upright pixels differ
        "face": (_faceless_jpeg(), {}, [BOX], "spliced", False),  # only the face's blocks re-encoded
        "face_rotated": (_faceless_jpeg(orientation=6), {}, [BOX], "reencoded", False),
        "face_off": (_faceless_jpeg(), {"keep_unchanged_jpeg": False}, [BOX], "reencoded", False),
        "off": (_faceless_jpeg(), {"keep_unchanged_jpeg": False}, (), "reencoded", False),
        "cmyk": (jpeg_bytes(Image.new("CMYK", (64, 48), (10, 200, 30, 40))), {}, (), "reencoded", False),
    }
    for name, (data, settings, boxes, encoding, same) in cases.items():
        replace = ReplaceFaces(ReplacementPolicy(), 10**6, 95, **settings)
        record = _stage(_record(name, data), replace, FixedBoxesFactory(boxes), FixedBoxesFactory([BOX]))
        assert (record.output_encoding, record.output_same_pixels, record.verify_detection) == \
            (encoding, same, "ran"), name
        assert record.reason == "verify:residual_faces", name  # the verifier ran and found its box


def test_lossless_outputs_with_no_face_replaced_reuse_detection_only_when_allowed() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(9).integers(0, 255, (40, 50, 3), np.uint8)).save(buffer, "PNG")
    for reuse, expected in ((True, ("", "reused")), (False, ("verify:residual_faces", "ran"))):
        record = _stage(_record("png", buffer.getvalue()), ReplaceFaces(ReplacementPolicy(), 10**6, 95),
                        FixedBoxesFactory(()), FixedBoxesFactory([BOX]), reuse=reuse)
        assert (record.output_encoding, record.output_same_pixels) == ("reencoded", True)
        assert (record.reason, record.verify_detection) == expected


def test_multi_picture_jpeg_is_published_as_its_first_image_alone(tmp_path: Path) -> None:
    from tests.helpers import exiftool_tags

    primary = Image.fromarray(np.random.default_rng(10).integers(0, 255, (48, 64, 3), np.uint8))
    buffer = io.BytesIO()
    primary.save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48), (9, 9, 9))])
    record = _stage(_record("mpo", buffer.getvalue()), ReplaceFaces(ReplacementPolicy(), 10**6, 95),
                    FixedBoxesFactory(()), FixedBoxesFactory(()))
    assert (record.status, record.source_format, record.output_encoding) == ("", "JPEG", "stripped")
    assert {"MPF", "JPEG:trailing_data"} <= set(record.metadata_removed)
    path = tmp_path / "out.jpg"
    path.write_bytes(record.data)
    tags = exiftool_tags(path)
    assert not [k for k in tags if k.startswith("MPF")] and tags["File:FileType"] == "JPEG"
