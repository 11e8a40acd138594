"""The second pass: a face verification finds on an output is replaced too, and the output verified again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fakes import FixedBoxesFactory, TexturedBoxesFactory
from tests.helpers import jpeg_bytes, run_job
from transforms.records import Face, Record
from transforms.verification import SECOND_PASS, VerifyOutput, second_pass_record

REPLACED = Face(10, 10, 60, 70, 0.99)
REVEALED = Face(120, 20, 170, 80, 0.97)


def _checked(replace_pass: int, source: bytes = b"source") -> Record:
    return Record("s", 0, "r", "u", "r.jpg", "", b"output", faces=(REPLACED,), method="gaussian",
                  output_faces=(Face(11, 11, 59, 69, 0.95), REVEALED, Face(0, 100, 30, 130, 0.5)),
                  residual_faces=2, source_data=source, replace_pass=replace_pass)


def test_a_first_pass_with_a_face_on_its_output_goes_to_the_second_pass() -> None:
    (out,) = list(VerifyOutput(10**8, second_pass=True).process(_checked(1)))
    assert out.tag == SECOND_PASS
    record = out.value
    # The source again, its face plus the one found on the output (not the one over the replaced
    # face, nor the one under the verification score), the verification fields cleared.
    assert record.data == b"source" and record.source_data == b"" and record.replace_pass == 2
    assert record.faces == (REPLACED, REVEALED)
    assert (record.residual_faces, record.output_faces, record.redetected_scores) == (-1, (), ())
    assert record.notes == ("second_pass:1_faces_found_on_output",)
    assert second_pass_record(_checked(1), 0.99).faces == (REPLACED,)  # nothing at or above 0.99


@pytest.mark.parametrize("record", [_checked(2), _checked(1, source=b"")], ids=["second-pass", "no-source"])
def test_otherwise_a_face_on_the_output_quarantines(record: Record) -> None:
    (out,) = list(VerifyOutput(10**8, second_pass=True).process(record))
    assert isinstance(out, Record) and out.is_quarantined and out.reason == "verify:residual_faces"
    (out,) = list(VerifyOutput(10**8).process(_checked(1)))
    assert out.is_quarantined and out.reason == "verify:residual_faces" and out.source_data == b""


def _textured_image(path: Path) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    path.write_bytes(jpeg_bytes(Image.fromarray(pixels)))


@pytest.mark.slow
def test_a_face_revealed_on_the_output_is_replaced_and_the_record_published(tmp_path: Path) -> None:
    """The detect pass finds one face; verification then finds a second one on the output (it still
    has texture). The second pass replaces both, verification finds none, and the record is published
    with both faces in the manifest. A verify detector that keeps finding the face quarantines it."""
    folder = tmp_path / "in"
    folder.mkdir()
    _textured_image(folder / "a.jpg")
    boxes = [(*REPLACED.box, 0.99), (*REVEALED.box, 0.97)]
    rows = run_job(str(folder), str(tmp_path / "out"), detector_factory=FixedBoxesFactory(boxes[:1]),
                   verify_factory=TexturedBoxesFactory(boxes), identity_check=False).to_pylist()
    (row,) = rows
    assert row["status"] == "published", row["reason"]
    assert [(f["x1"], f["y1"]) for f in row["faces"]] == [(10.0, 10.0), (120.0, 20.0)]
    assert row["residual_faces"] == 0
    output = np.asarray(Image.open(tmp_path / "out" / "data" / "a.jpg").convert("L"), dtype=np.float32)
    assert output[20:80, 120:170].std() < 20  # the revealed face was replaced
    rows = run_job(str(folder), str(tmp_path / "out2"), detector_factory=FixedBoxesFactory(boxes[:1]),
                   verify_factory=FixedBoxesFactory(boxes), identity_check=False).to_pylist()
    assert [(r["status"], r["reason"]) for r in rows] == [("quarantined", "verify:residual_faces")]
