"""Text regions (redact: faces,text): the detector on the generated set, the option, replacement
and verification through the whole job."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.anonymize import detector_stack_for
from pipelines.config import ConfigError, build_options
from pipelines.options import parse_redact
from pipelines.settings import replacement_policy_for
from tests.datasets import face_photo
from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY_SETS, BASE_CONF, run_job
from tests.text_scenes import PHOTOS, _photo, coverage, text_scenes
from transforms.detection import Factory
from transforms.detection.text import (
    MODEL_SHA256,
    TextAndFacesFactory,
    TextDetector,
    TextSettings,
    _checked_model,
    merged_lines,
    text_available,
    text_model_path,
)
from transforms.records import TEXT, Face
from transforms.replacement import ReplacementPolicy, grown_box, replace_faces
from transforms.summary import regions_per_kind, render_html, summarise

pytestmark = pytest.mark.skipif(not text_available(), reason="needs rapidocr-onnxruntime's model (make install)")

STRICT = str(Path(__file__).resolve().parents[1] / "conf" / "policy" / "strict.yaml")
MAGENTA = (255, 0, 255)
FACE_BOX = (150.0, 40.0, 260.0, 170.0, 0.99)


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector(TextSettings())


def test_model_file_is_hash_checked(tmp_path: Path) -> None:
    path = text_model_path()
    assert path is not None
    assert len(_checked_model(path)) > 4_000_000
    tampered = tmp_path / "model.onnx"
    tampered.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(RuntimeError, match=MODEL_SHA256):
        _checked_model(tampered)


def test_every_text_of_12px_or_more_is_found_on_the_generated_set(detector: TextDetector) -> None:
    scenes = text_scenes(20)
    labels = [(scene, label) for scene in scenes for label in scene.labels if label.char_height >= 12]
    assert len(labels) >= 35 and {label.kind for _, label in labels} == {"plate_eu", "plate_uk", "plate_us",
                                                                          "badge", "sign"}
    assert any(label.angle != 0 for _, label in labels)
    found = {scene.name: detector.detect([scene.image])[0] for scene in scenes}
    assert all(face.kind == TEXT for faces in found.values() for face in faces)
    missed = [(scene.name, label.text, label.char_height) for scene, label in labels
              if coverage(label.box, [f.box for f in found[scene.name]]) < 0.9]
    assert not missed


def test_no_text_found_on_text_free_photos(detector: TextDetector) -> None:
    # Coins carry engraved lettering; every other sample photo and the face photos have no text.
    photos = [_photo(name) for name in PHOTOS if name != "coins"] + [face_photo(seed) for seed in range(4)]
    assert [faces for faces in detector.detect(photos) if faces] == []


def test_min_height_leaves_small_text_untouched(detector: TextDetector) -> None:
    scene = text_scenes(12)[3]
    heights = sorted({label.char_height for label in scene.labels})
    all_found = detector.detect([scene.image])[0]
    tall_only = TextDetector(TextSettings(min_height=40)).detect([scene.image])[0]
    assert len(tall_only) < len(all_found), heights
    assert all(face.short_side >= 40 for face in tall_only)


def test_short_strings_need_a_lower_min_aspect(detector: TextDetector) -> None:
    from PIL import ImageDraw

    from tests.text_scenes import _sized_font, fonts

    image = _photo("grass")
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 100, 180, 164), fill=(20, 90, 50))
    draw.text((116, 116), "42", font=_sized_font(fonts()[0], 32), fill=(255, 255, 255))
    assert detector.detect([image]) == [[]]
    (found,) = TextDetector(TextSettings(min_aspect=1.0)).detect([image])[0]
    assert coverage((116, 116, 164, 148), [found.box]) >= 0.9


def test_a_line_s_words_are_joined_and_blobs_dropped() -> None:
    words = [(Face(10, 10, 50, 30, 0.9, TEXT), True), (Face(60, 11, 80, 31, 0.8, TEXT), False),
             (Face(200, 200, 240, 236, 0.9, TEXT), False)]
    assert merged_lines(words, 1.6) == [Face(10, 10, 80, 31, 0.9, TEXT)]


def test_redact_option_is_validated_naming_the_key() -> None:
    assert parse_redact("faces") == ("faces",) and parse_redact(" faces , text ") == ("faces", "text")
    for bad, why in (("faces,plates", "unknown kind 'plates'"), ("text", "must include faces"),
                     ("faces,faces", "named twice")):
        with pytest.raises(ValueError, match=f"redact: .*{why}"):
            parse_redact(bad)
    with pytest.raises(ConfigError, match="redact: unknown kind"):
        build_options([BASE_CONF], ["input=/in", "output=/out", "redact=faces,licence_plates",
                                    *[s for s in ACCOUNTABILITY_SETS if s != "--set"]])
    for bad in ("text_min_height=-1", "text_min_aspect=0.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            build_options([BASE_CONF], ["input=/in", "output=/out", bad,
                                        *[s for s in ACCOUNTABILITY_SETS if s != "--set"]])


def test_strict_policy_turns_text_on() -> None:
    overrides = ["input=/in", "output=/out", *[s for s in ACCOUNTABILITY_SETS if s != "--set"]]
    default, _ = build_options([BASE_CONF], overrides)
    assert default.redact == "faces" and not isinstance(detector_stack_for(default).detect, TextAndFacesFactory)
    strict, _ = build_options([BASE_CONF, STRICT], [*overrides, "text_min_height=8", "text_min_aspect=1.2"])
    stack = detector_stack_for(strict)
    assert isinstance(stack.detect, TextAndFacesFactory) and isinstance(stack.verify, TextAndFacesFactory)
    assert stack.detect.text == Factory(TextDetector, TextSettings(min_height=8, min_aspect=1.2, threads=1,
                                                                       device="auto"))
    assert TEXT in replacement_policy_for(strict).self_thresholded_detectors
    assert stack.info()["detect"]["settings"][TEXT]["min_height"] == 8


@pytest.mark.parametrize("method", ["synthetic", "pixelate"])
def test_text_is_blurred_under_synthetic_and_pixelate(method: str) -> None:
    policy = ReplacementPolicy(method=method)
    text = Face(20, 20, 120, 44, 0.7, TEXT)
    assert policy.face_method(text) == ("gaussian", TEXT)
    image = text_scenes(1)[0].image
    replaced = replace_faces(image, [text], policy)
    blurred = replace_faces(image, [text], ReplacementPolicy(method="gaussian"))
    assert np.array_equal(np.asarray(replaced), np.asarray(blurred))


def _filled(output: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """The share of ``box``'s pixels that are the solid fill (magenta) in ``output``."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return float(np.all(output[y1:y2, x1:x2] == MAGENTA, axis=2).mean())


def _png(image: Image.Image, path: Path) -> None:
    image.save(path, "PNG")


def test_job_replaces_every_text_and_verifies_none_is_left(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    scenes = text_scenes(6)
    for scene in scenes:
        _png(scene.image, folder / f"{scene.name}.png")
    text = Factory(TextDetector, TextSettings())
    table = run_job(str(folder), str(tmp_path / "solid"), TextAndFacesFactory(FixedBoxesFactory(()), text),
                    redact="faces,text", method="solid", solid_color="255,0,255", identity_check=False)
    solid = table.to_pylist()
    assert [row["status"] for row in solid] == ["published"] * len(scenes), [row["reason"] for row in solid]
    by_name = {Path(row["relative_path"]).stem: row for row in solid}
    for scene in scenes:
        row = by_name[scene.name]
        # Searched again on the (lossless) output, in windows around the text or whole; never reused.
        assert row["residual_faces"] == 0 and row["verify_detection"] in ("ran", "regions")
        assert row["face_kinds"] and set(row["face_kinds"]) == {TEXT} and row["face_methods"] == ["solid"] * len(
            row["face_kinds"])
        output = np.asarray(Image.open(tmp_path / "solid" / "data" / f"{scene.name}.png").convert("RGB"))
        for label in scene.labels:
            if label.char_height >= 12:
                assert _filled(output, label.box) >= 0.9, (scene.name, label.text)
    summary = summarise(table, [])
    texts = sum(len(row["face_kinds"]) for row in solid)
    assert summary["regions_per_kind"] == {"found": {"text": texts}, "published": {"text": texts}}
    assert summary["faces_total"] == 0  # size bands count faces only
    assert f"{texts} found, {texts} in published images" in render_html(summary)
    # Blurred (the default method): the verify stage finds no text on any output either.
    blurred = run_job(str(folder), str(tmp_path / "blur"), TextAndFacesFactory(FixedBoxesFactory(()), text),
                      redact="faces,text", identity_check=False).to_pylist()
    assert all(row["status"] == "published" and row["residual_faces"] == 0 for row in blurred), \
        [row["reason"] for row in blurred]


def test_text_free_face_photos_are_unchanged_outside_their_faces(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photos = {"astronaut": _photo("astronaut"), "chelsea": _photo("chelsea"),
              **{f"face{seed}": face_photo(seed) for seed in (0, 2)}}
    for name, photo in photos.items():
        _png(photo, folder / f"{name}.png")
    text = Factory(TextDetector, TextSettings())
    # The face is detected at a fixed box and not found again on the outputs; text is searched for on both.
    rows = run_job(str(folder), str(tmp_path / "out"), TextAndFacesFactory(FixedBoxesFactory([FACE_BOX]), text),
                   TextAndFacesFactory(FixedBoxesFactory(()), text), redact="faces,text",
                   identity_check=False).to_pylist()
    assert len(rows) == len(photos)
    for row in rows:
        name = Path(row["relative_path"]).stem
        assert row["status"] == "published" and row["face_kinds"] == ["face"], (name, row["reason"])
        output = np.asarray(Image.open(io.BytesIO((tmp_path / "out" / "data" / f"{name}.png").read_bytes()))
                            .convert("RGB")).copy()
        original = np.asarray(photos[name]).copy()
        x1, y1, x2, y2 = grown_box(Face(*FACE_BOX), ReplacementPolicy().box_margin, *photos[name].size)
        assert not np.array_equal(output[y1:y2, x1:x2], original[y1:y2, x1:x2])
        output[y1:y2, x1:x2] = original[y1:y2, x1:x2] = 0
        assert np.array_equal(output, original), name
    shutil.rmtree(folder)


def test_text_counts_as_found_on_an_output_at_any_score() -> None:
    assert Face(0, 0, 50, 10, 0.55, TEXT).counts_at(0.9) and not Face(0, 0, 50, 50, 0.55, "mtcnn").counts_at(0.9)


def test_text_the_detect_pass_missed_is_found_on_the_output_and_replaced_again(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    scene = text_scenes(3)[2]
    _png(scene.image, folder / "scene.png")
    # Detection finds nothing; verification searches the output for text, finds it, and the second
    # pass replaces it; the output is verified again from the start.
    rows = run_job(str(folder), str(tmp_path / "out"), FixedBoxesFactory(()),
                   TextAndFacesFactory(FixedBoxesFactory(()), Factory(TextDetector, TextSettings())),
                   redact="faces,text", method="solid", solid_color="255,0,255", identity_check=False).to_pylist()
    (row,) = rows
    assert row["status"] == "published" and row["replace_passes"] == 2 and row["residual_faces"] == 0, row["reason"]
    assert row["face_kinds"] and set(row["face_kinds"]) == {TEXT}
    output = np.asarray(Image.open(tmp_path / "out" / "data" / "scene.png").convert("RGB"))
    assert all(_filled(output, label.box) >= 0.9 for label in scene.labels if label.char_height >= 12)


def test_regions_per_kind_counts_found_and_published_regions() -> None:
    rows = [{"status": "published", "faces": [{}, {}], "face_kinds": ["face", "text"]},
            {"status": "quarantined", "faces": [{}], "face_kinds": ["text"]},
            {"status": "published", "faces": [{}]}]  # a row written before face_kinds: faces
    assert regions_per_kind(rows) == {"found": {"face": 2, "text": 2}, "published": {"face": 2, "text": 1}}


def test_text_benchmark_prints_recall_per_band_and_both_throughputs(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_text", Path(__file__).resolve().parents[1]
                                                  / "benchmarks" / "text.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--scenes", "3", "--speed-scenes", "1", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    recall_part, reading_part = out.split("verify reading", 1)
    bands = [line.split() for line in recall_part.splitlines() if line[:1].isdigit() or line.startswith(">=")]
    assert bands and sum(int(cells[1]) for cells in bands) == sum(len(s.labels) for s in text_scenes(3))
    # The verify stage's reader: every region of 12 px or more read on the clean scene, none after the blur.
    read = [line.split() for line in reading_part.splitlines() if line[:1].isdigit() or line.startswith(">=")]
    assert read and all(cells[3] == "0" for cells in read)
    assert all(cells[1] == cells[2] for cells in read if not cells[0].startswith("0-"))
    assert "text regions on 17 text-free photos: 0" in out
    speeds = re.search(r"faces ([\d.]+)\s+faces,text ([\d.]+)", out)
    assert speeds is not None and float(speeds.group(1)) > 0 and float(speeds.group(2)) > 0


def test_under_synthetic_with_identity_checks_text_is_blurred_and_published(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    from skimage import data

    # The astronaut's head pasted clear of the scene's text: a face the identity check can measure,
    # so synthetic substitutes it (an unmeasurable one would be blurred); the text is blurred.
    scene = text_scenes(2)[1].image.copy()
    scene.paste(Image.fromarray(data.astronaut()).crop((141, 22, 308, 202)), (0, 0))
    _png(scene, folder / "scene.png")
    text = Factory(TextDetector, TextSettings())
    face = (40.0, 40.0, 127.0, 150.0, 0.99)
    (row,) = run_job(str(folder), str(tmp_path / "out"), TextAndFacesFactory(FixedBoxesFactory([face]), text),
                     TextAndFacesFactory(FixedBoxesFactory(()), text), redact="faces,text",
                     method="synthetic").to_pylist()
    assert row["status"] == "published", row["reason"]
    kinds = row["face_kinds"]
    assert kinds[0] == "face" and set(kinds[1:]) == {TEXT} and len(kinds) >= 3
    assert row["face_methods"] == ["synthetic"] + ["gaussian"] * (len(kinds) - 1)
    assert row["face_method_reasons"] == [""] + [TEXT] * (len(kinds) - 1)
    assert "matched" not in row["face_identity_statuses"]


def test_not_measured_keeps_text_regions_apart_from_faces() -> None:
    from expectations.verdict import not_measured_lines
    from transforms.summary import not_measured

    row = {"status": "published", "faces": [{"score": 0.99}, {"score": 0.6}, {"score": 0.7}],
           "face_kinds": ["face", "text", "text"],
           "face_identity_statuses": ["measured_no_match", "unmeasurable_no_face", "unmeasurable_small"]}
    figures = not_measured([row])
    assert figures["published_faces"] == 1 and figures["published_text_regions"] == 2
    assert figures["identity_statuses"] == {"measured_no_match": 1} and figures["low_score_detections"] == 0
    lines = not_measured_lines(figures)
    assert any(line.startswith("2 text regions") for line in lines)
    assert any("Identity check of the 1 faces" in line for line in lines)
