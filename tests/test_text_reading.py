"""Reading text regions found on outputs (transforms/detection/text_reading.py), and what the verify
stage counts of them: read text is residual, unread text and text in generated pixels are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.fakes import FixedBoxesFactory
from tests.helpers import run_job
from tests.text_scenes import fonts, text_scenes
from transforms.detection import Factory
from transforms.detection.text import TextAndFacesFactory, TextDetector, TextSettings, _checked_model, text_available
from transforms.detection.text_reading import MODEL_SHA256, Reading, TextReader, ctc_decode, reader_model_path
from transforms.records import TEXT, UNREAD_TEXT, Face, Record
from transforms.replacement import ReplacementPolicy, one_box_per_face, replace_faces
from transforms.verification import in_generated_pixels, leaked_faces

pytestmark = pytest.mark.skipif(not text_available() or reader_model_path() is None,
                                reason="needs rapidocr-onnxruntime's models (make install)")


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector(TextSettings())


def _bars() -> Image.Image:
    """Vertical bars the text detector takes for a line of text, and no reader can read."""
    image = Image.new("RGB", (640, 480), (200, 200, 200))
    font = ImageFont.truetype(fonts()[0], 40) if fonts()[0] != "default" else ImageFont.load_default(40)
    ImageDraw.Draw(image).text((60, 200), "| | | | | | | |", fill=(20, 20, 20), font=font)
    return image


def test_reader_model_is_hash_checked(tmp_path: Path) -> None:
    path = reader_model_path()
    assert path is not None and len(_checked_model(path, MODEL_SHA256)) > 10_000_000
    tampered = tmp_path / "rec.onnx"
    tampered.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(RuntimeError, match=MODEL_SHA256):
        _checked_model(tampered, MODEL_SHA256)


def test_ctc_decoding_collapses_repeats_and_drops_blanks() -> None:
    characters = ["", "A", "B"]
    columns = [0, 1, 1, 0, 1, 2, 2, 0]
    probabilities = np.full((len(columns), 3), 0.05)
    for t, c in enumerate(columns):
        probabilities[t, c] = 0.9 - 0.1 * (t == 4)
    reading = ctc_decode(probabilities, characters)
    assert reading.text == "AAB" and reading.confidences == pytest.approx((0.9, 0.8, 0.9))


def test_readable_needs_two_confident_characters() -> None:
    assert Reading("AB", (0.5, 0.9)).readable
    assert not Reading("AB", (0.49, 0.9)).readable
    assert not Reading("A B", (0.9, 0.99, 0.3)).readable  # a space is not a character read
    assert not Reading("", ()).readable


def test_every_generated_text_reads_and_none_after_the_blur(reader: TextReader, detector: TextDetector) -> None:
    regions = read = read_after = 0
    policy = ReplacementPolicy(method="gaussian")
    for scene in text_scenes(12):
        found = detector.detect([scene.image])[0]
        blurred = replace_faces(scene.image, found, policy)
        for face in found:
            box = (face.x1, face.y1, face.x2, face.y2)
            regions += 1
            read += reader.read(scene.image, box).readable
            read_after += reader.read(blurred, box).readable
    assert regions >= 30 and read == regions and read_after == 0, (regions, read, read_after)


def test_a_vertical_line_is_read_turned(reader: TextReader) -> None:
    plate = Image.new("RGB", (300, 60), (250, 250, 250))
    ImageDraw.Draw(plate).text((10, 8), "KA 4821", fill=(0, 0, 0), font=ImageFont.truetype(fonts()[0], 40))
    upright = plate.rotate(90, expand=True)
    assert reader.read(upright, (0, 0, upright.width, upright.height)).readable
    assert not reader.read(upright, (0, 0, 1, upright.height)).readable  # under 2 px: nothing to read


def test_the_verify_detector_marks_what_it_cannot_read(detector: TextDetector) -> None:
    reading = TextDetector(TextSettings(read=True))
    bars = _bars()
    (found,) = detector.detect([bars])[0]
    assert found.detector == TEXT and found.counts_at(0.9)
    (unread,) = reading.detect([bars])[0]
    assert unread.detector == UNREAD_TEXT and unread.kind == TEXT and not unread.counts_at(0.0)
    scene = text_scenes(1)[0]
    assert [f.detector for f in reading.detect([scene.image])[0]] == [TEXT] * len(detector.detect([scene.image])[0])


def _verified(faces: tuple[Face, ...], methods: tuple[str, ...], found: tuple[Face, ...]) -> Record:
    return Record("s", 0, "r", "u", "p", "h", b"", faces=faces, face_methods=methods, output_faces=found,
                  residual_faces=sum(f.counts_at(0.9) for f in found))


def test_text_inside_a_generated_face_box_is_not_residual() -> None:
    face = Face(40, 40, 127, 150, 0.99, "mtcnn")
    inside = Face(63, 80, 108, 98, 0.8, TEXT)
    across = Face(100, 80, 140, 98, 0.8, TEXT)
    for method in ("synthetic", "solid"):
        assert in_generated_pixels(inside, _verified((face,), (method,), ()))
        assert leaked_faces(_verified((face,), (method,), (inside,)), 0.9, 0.6) == 0
        assert leaked_faces(_verified((face,), (method,), (inside, across)), 0.9, 0.6) == 1
    # A blur keeps the original's pixels (weighted): text found there counts.
    assert leaked_faces(_verified((face,), ("gaussian",), (inside,)), 0.9, 0.6) == 1
    # Without the methods recorded, nothing is excused.
    assert leaked_faces(_verified((face,), (), (inside,)), 0.9, 0.6) == 1
    assert leaked_faces(_verified((face,), ("gaussian",), (Face(63, 80, 108, 98, 0.8, UNREAD_TEXT),)), 0.9, 0.6) == 0


def test_a_text_region_and_a_face_are_never_merged() -> None:
    banner = Face(0, 0, 400, 120, 0.95, TEXT)
    face = Face(100, 20, 140, 70, 0.99, "mtcnn")
    assert one_box_per_face([banner, face]) == (banner, face)
    assert one_box_per_face([Face(0, 0, 400, 120, 0.9, TEXT), Face(10, 10, 300, 110, 0.8, TEXT)]) == (
        Face(0, 0, 400, 120, 0.9, TEXT),)


def test_unreadable_text_on_an_output_is_recorded_and_readable_text_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _bars().save(folder / "bars.png")
    scene = text_scenes(3)[2]
    scene.image.save(folder / "scene.png")
    # Detection finds nothing; the verify stage reads what it finds: the bars cannot be read (published,
    # recorded), the scene's text can (replaced in the second pass, then searched again).
    verify = TextAndFacesFactory(FixedBoxesFactory(()), Factory(TextDetector, TextSettings(read=True)))
    rows = {Path(row["relative_path"]).stem: row for row in run_job(
        str(folder), str(tmp_path / "out"), FixedBoxesFactory(()), verify, redact="faces,text",
        identity_check=False).to_pylist()}
    bars, text = rows["bars"], rows["scene"]
    assert bars["status"] == "published" and bars["replace_passes"] == 1, bars["reason"]
    assert bars["residual_faces"] == 0 and bars["unread_text_regions"] == 1 and bars["face_count"] == 0
    assert text["status"] == "published" and text["replace_passes"] == 2 and text["residual_faces"] == 0, text["reason"]
    assert text["face_kinds"] and set(text["face_kinds"]) == {TEXT}
    # Under the plain detector, the bars are text found on the output: replaced, then found again.
    plain = TextAndFacesFactory(FixedBoxesFactory(()), Factory(TextDetector, TextSettings()))
    (strict,) = [row for row in run_job(str(folder), str(tmp_path / "plain"), FixedBoxesFactory(()), plain,
                                        redact="faces,text", identity_check=False).to_pylist()
                 if row["relative_path"].endswith("bars.png")]
    assert strict["replace_passes"] == 2 and strict["face_kinds"] == [TEXT]


def test_the_steward_is_told_of_unread_text_in_published_images() -> None:
    from expectations.verdict import not_measured_lines
    from transforms.summary import not_measured

    rows = [{"status": "published", "faces": [], "face_kinds": [], "unread_text_regions": 2},
            {"status": "quarantined", "faces": [], "face_kinds": [], "unread_text_regions": 5},
            {"status": "published", "faces": [], "face_kinds": [], "unread_text_regions": None}]
    figures = not_measured(rows)
    assert figures["unread_text_regions"] == 2
    lines = not_measured_lines(figures)
    assert any(line.startswith("2 regions in published images looked like text") for line in lines)
    assert not any("looked like text" in line for line in not_measured_lines(not_measured(rows[1:])))
