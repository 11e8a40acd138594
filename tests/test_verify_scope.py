"""Verification in windows around what changed (transforms/verify_scope.py, verify_scope: regions)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from tests.fakes import FixedBoxesFactory
from tests.helpers import jpeg_bytes
from transforms.decode import DecodeAndNormalise
from transforms.detection import CenterFaceDetector, CenterFaceSettings, FaceDetectionHandler, Factory
from transforms.records import Face, Record
from transforms.replace_stage import ReplaceFaces
from transforms.replacement import ReplacementPolicy, grown_box
from transforms.verify_scope import changed_boxes, changed_mask, changed_regions_of, verify_windows

ASTRONAUT_FACE = (170, 40, 270, 170)  # around the astronaut's face in scikit-image's photo


def _record(image: Image.Image, **changes: object) -> Record:
    data = jpeg_bytes(image)
    record = Record("s", 0, "r", "mem://r", "r.jpg", hashlib.sha256(data).hexdigest(), data,
                    width=image.width, height=image.height)
    return record.replace(**changes)


def test_changed_boxes_bound_each_group_of_changed_pixels() -> None:
    mask = np.zeros((50, 80), bool)
    mask[5:10, 6:20] = True
    mask[30:41, 60:62] = True
    mask[10, 20] = True  # touches the first group diagonally: 8-connected, one group
    assert changed_boxes(mask) == ((6, 5, 21, 11), (60, 30, 62, 41))
    assert changed_boxes(np.zeros((4, 4), bool)) == ()


def test_changed_mask_sees_any_channel() -> None:
    a = np.zeros((3, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 2] = 1
    assert changed_mask(a, b).tolist() == [[False] * 4, [False, False, True, False], [False] * 4]
    with pytest.raises(ValueError, match="shapes differ"):
        changed_mask(a, np.zeros((3, 3, 3), np.uint8))


def test_windows_grow_clip_merge_and_give_way_to_the_whole_image() -> None:
    # A 10 px change grows by the minimum context (16 px) on each side, clipped at the image border,
    # then out to the 32 px grid.
    assert verify_windows(((5, 30, 15, 40),), 400, 300) == ((0, 0, 32, 64),)
    # A 100 px change grows by half its longer side.
    assert verify_windows(((150, 100, 250, 150),), 1000, 800) == ((96, 32, 320, 224),)
    # Two changes whose windows overlap make one window; far ones stay apart, disjoint.
    windows = verify_windows(((100, 100, 110, 110), (130, 100, 140, 110), (600, 500, 610, 510)), 1000, 800)
    assert windows == ((64, 64, 160, 128), (576, 480, 640, 544))
    # Windows over more than 70% of the image: search it whole.
    assert verify_windows(((100, 100, 300, 300),), 400, 400) is None
    assert verify_windows((), 400, 400) == ()


def test_regions_are_the_changed_pixels_and_the_owned_regions() -> None:
    mask = np.zeros((100, 200), bool)
    mask[10:20, 30:40] = True
    assert changed_regions_of(mask, owned=[(25, 5, 50, 30)]) == ((25, 5, 50, 30), (30, 10, 40, 20))
    mask[:, :150] = True  # changed nearly everywhere (a re-encoding): the whole image
    assert changed_regions_of(mask, owned=[(25, 5, 50, 30)]) == ((0, 0, 200, 100),)


def test_the_replace_stage_keeps_every_other_pixel_and_records_where_they_differ() -> None:
    """On a real photo and a real blur: the output is spliced (jpeg_splice.py), so it decodes to the
    source's very pixels outside the recorded regions; they hold the face box and lie within the
    replaced region grown to the 16 px block grid plus one block (the chroma upsampling)."""
    image = Image.fromarray(skdata.astronaut())
    face = Face(*ASTRONAUT_FACE, score=0.99, detector="centerface")
    (record,) = DecodeAndNormalise(10**8, 1).process(_record(image, faces=(face,)))
    source = np.asarray(Image.open(io.BytesIO(record.data)).convert("RGB"))
    policy = ReplacementPolicy(self_thresholded_detectors=("centerface",))
    stage = ReplaceFaces(policy, 10**8, 95)
    stage.setup()
    (record,) = stage.process(record)
    assert record.output_encoding == "spliced" and record.changed_regions
    output = np.asarray(Image.open(io.BytesIO(record.data)).convert("RGB"))
    outside = np.ones(source.shape[:2], bool)
    for x1, y1, x2, y2 in record.changed_regions:
        outside[y1:y2, x1:x2] = False
    assert np.array_equal(output[outside], source[outside])
    assert not np.array_equal(output[~outside], source[~outside])
    gx1, gy1, gx2, gy2 = grown_box(face, policy.box_margin, image.width, image.height)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert any(r[0] <= x1 and r[1] <= y1 and r[2] >= x2 and r[3] >= y2 for r in record.changed_regions)
    for r in record.changed_regions:
        assert gx1 // 16 * 16 - 16 <= r[0] and gy1 // 16 * 16 - 16 <= r[1]
        assert r[2] <= -(-gx2 // 16) * 16 + 16 and r[3] <= -(-gy2 // 16) * 16 + 16


def test_a_reencoded_output_is_changed_everywhere() -> None:
    image = Image.fromarray(skdata.astronaut())
    face = Face(*ASTRONAUT_FACE, score=0.99, detector="centerface")
    (record,) = DecodeAndNormalise(10**8, 1).process(_record(image, faces=(face,)))
    stage = ReplaceFaces(ReplacementPolicy(self_thresholded_detectors=("centerface",)), 10**8, 95,
                         keep_unchanged_jpeg=False)
    stage.setup()
    (record,) = stage.process(record)
    assert record.output_encoding == "reencoded"
    assert record.changed_regions == ((0, 0, image.width, image.height),)


def _verify(record: Record, factory: object, scope: str) -> Record:
    handler = FaceDetectionHandler(factory, 4, 10**8, mode="verify", scope=scope)  # type: ignore[arg-type]
    (out,) = handler.run_inference([record], factory())  # type: ignore[operator]
    return out


def test_faces_found_in_a_window_are_placed_in_the_image() -> None:
    record = _record(Image.new("RGB", (400, 300), (90, 90, 90)), changed_regions=((100, 100, 120, 120),))
    out = _verify(record, FixedBoxesFactory([(10, 10, 40, 40, 0.99)]), "regions")
    assert out.verify_detection == "regions"
    assert [f.box for f in out.output_faces] == [(74, 74, 104, 104)]
    assert out.residual_faces == 1
    # The full scope searches the whole image: the same box, unmoved.
    full = _verify(record, FixedBoxesFactory([(10, 10, 40, 40, 0.99)]), "full")
    assert (full.verify_detection, [f.box for f in full.output_faces]) == ("ran", [(10, 10, 40, 40)])


@pytest.fixture(scope="module")
def centerface() -> Factory[CenterFaceSettings]:
    return Factory(CenterFaceDetector, CenterFaceSettings(threshold=0.2, torch_threads=1))


def test_a_face_left_where_pixels_changed_is_found_by_the_real_detector(
        centerface: Factory[CenterFaceSettings]) -> None:
    """A replacement that left the face (its region changed, the face still there): the window
    holds the face and the real detector finds it above the verification score."""
    image = Image.fromarray(skdata.astronaut())
    out = _verify(_record(image, changed_regions=(ASTRONAUT_FACE,)), centerface, "regions")
    assert out.verify_detection == "regions"
    assert any(f.score >= 0.9 and f.iou(Face(*ASTRONAUT_FACE, score=1.0)) > 0.3 for f in out.output_faces)
    assert out.residual_faces >= 1


def test_a_face_far_from_every_change_is_left_to_the_detect_stage(centerface: Factory[CenterFaceSettings]) -> None:
    """The scope's limit, on purpose: pixels far from every change are not searched again (the
    detect stage searched them on the source; ``verify_scope: full`` searches them again)."""
    image = Image.fromarray(skdata.astronaut())
    record = _record(image, changed_regions=((430, 430, 440, 440),))
    assert _verify(record, centerface, "regions").residual_faces == 0
    assert _verify(record, centerface, "full").residual_faces >= 1


def test_an_output_with_no_recorded_change_is_searched_whole() -> None:
    out = _verify(_record(Image.new("RGB", (200, 100))), FixedBoxesFactory([(1, 1, 30, 30, 0.95)]), "regions")
    assert (out.verify_detection, out.residual_faces) == ("ran", 1)


def test_a_detector_that_rescales_its_input_searches_whole_outputs() -> None:
    """The text detector scales each image to its own input size: a window would be searched at
    another scale, so with it (here beside a fixed face detector) outputs are searched whole."""
    from transforms.detection import UnionFactory
    from transforms.detection.text import TextAndFacesFactory, TextDetector, TextSettings

    record = _record(Image.new("RGB", (400, 300), (90, 90, 90)), changed_regions=((100, 100, 120, 120),))
    with_text = TextAndFacesFactory(FixedBoxesFactory([(10, 10, 40, 40, 0.99)]), Factory(TextDetector, TextSettings()))
    assert not with_text.searches_windows and not UnionFactory([FixedBoxesFactory(), with_text]).searches_windows
    handler = FaceDetectionHandler(with_text, 4, 10**8, mode="verify", scope="regions")
    (out,) = handler.run_inference([record], with_text())
    assert out.verify_detection == "ran" and [f.box for f in out.output_faces if f.detector == "fixed"] == [
        (10, 10, 40, 40)]


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="verify_scope"):
        FaceDetectionHandler(FixedBoxesFactory(), 4, 10**6, mode="verify", scope="half")


@pytest.mark.slow
def test_a_whole_job_splices_and_verifies_in_windows(tmp_path: Path) -> None:
    """The default policy with its real detectors, through the job: a 1024 px photo with one small
    face is published spliced (every pixel outside the recorded change is the source's), verified
    in windows, and the output's face is gone for an independent detector (facenet-pytorch's MTCNN)."""
    from tests.helpers import run_job
    from transforms.detection import MtcnnDetector, MtcnnSettings

    scene = Image.fromarray(skdata.coffee()).resize((1024, 768))
    face = Image.fromarray(skdata.astronaut()).crop((150, 30, 300, 200)).resize((75, 85))
    scene.paste(face, (700, 420))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cafe.jpg").write_bytes(jpeg_bytes(scene))
    (row,) = run_job(str(folder), str(tmp_path / "out"), identity_check=False).to_pylist()
    assert row["status"] == "published", row["reason"]
    assert (row["output_encoding"], row["verify_detection"]) == ("spliced", "regions")
    assert row["faces"] and all(700 - 20 < f["x1"] and f["x2"] < 775 + 20 for f in row["faces"])
    source = np.asarray(Image.open(folder / "cafe.jpg").convert("RGB"))
    output = np.asarray(Image.open(tmp_path / "out" / "data" / "cafe.jpg").convert("RGB"))
    differs = np.argwhere(np.any(source != output, axis=-1))
    assert differs.size and differs[:, 1].min() >= 640 and differs[:, 1].max() < 848  # x: near the face only
    found = MtcnnDetector(MtcnnSettings(min_face_size=20, torch_threads=1)).detect([Image.fromarray(output)])[0]
    assert not [f for f in found if f.score >= 0.9 and 650 < f.x1 < 800]
