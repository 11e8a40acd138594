"""Face replacement: golden images per method and the properties every method must keep."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from tests.helpers import assert_golden
from transforms.records import Face
from transforms.replacement import ReplacementPolicy, face_box, grown_box, replace_faces

FACE = Face(50.0, 31.0, 118.0, 123.0, 0.99)  # MTCNN's box of the astronaut in the crop below


def _photo() -> Image.Image:
    return Image.fromarray(skdata.astronaut()).crop((120, 20, 320, 220)).resize((160, 160))


@pytest.mark.parametrize("method", ["gaussian", "solid", "pixelate"])
def test_golden_image(method: str) -> None:
    out = replace_faces(_photo(), [FACE], ReplacementPolicy(method=method))
    assert_golden(f"replace_{method}", np.asarray(out))


@pytest.mark.parametrize("method", ["gaussian", "solid", "pixelate"])
def test_face_box_fully_replaced_and_outside_untouched(method: str) -> None:
    photo = _photo()
    out = np.asarray(replace_faces(photo, [FACE], ReplacementPolicy(method=method)), np.int16)
    original = np.asarray(photo, np.int16)
    x1, y1, x2, y2 = face_box(FACE, 160, 160)
    inside = np.abs(out[y1:y2, x1:x2] - original[y1:y2, x1:x2]).max(axis=-1)
    assert (inside > 0).mean() > 0.9  # (a pixel may coincide with its blurred value by chance)
    gx1, gy1, gx2, gy2 = grown_box(FACE, 0.2, 160, 160)
    outside = np.ones((160, 160), bool)
    outside[gy1:gy2, gx1:gx2] = False
    assert np.array_equal(out[outside], original[outside])


def test_blur_strength_scales_with_the_largest_face() -> None:
    photo = _photo()
    weak = np.asarray(replace_faces(photo, [FACE], ReplacementPolicy(blur_sigma_factor=0.1)), np.int16)
    strong = np.asarray(replace_faces(photo, [FACE], ReplacementPolicy(blur_sigma_factor=0.4)), np.int16)
    x1, y1, x2, y2 = face_box(FACE, 160, 160)

    def detail(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a[y1:y2, x1:x2], axis=1)).mean())

    assert detail(strong) < detail(weak) < detail(np.asarray(photo, np.int16))


@pytest.mark.parametrize(("field", "kwargs"), [
    ("box_margin", {"box_margin": 0.05}), ("blur_sigma_factor", {"blur_sigma_factor": 0.05}),
    ("method", {"method": "smudge"}), ("pixelate_blocks", {"pixelate_blocks": 1}),
])
def test_policy_rejects_weaker_than_the_floor(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=field):
        ReplacementPolicy(**kwargs)  # type: ignore[arg-type]


def test_pixelate_is_marked_low_security() -> None:
    assert ReplacementPolicy(method="pixelate").security_level == "low"
    assert ReplacementPolicy(method="gaussian").security_level == "high"


def test_detections_of_one_face_are_merged_before_any_replacement() -> None:
    """A box mostly inside a more confident one (a hat-to-chin box around a face box) is one face:
    the union of both, so nothing either covered is left, replaced once."""
    from transforms.replacement import one_box_per_face

    face = Face(100, 100, 140, 150, 0.99, "fast_mtcnn")
    larger = Face(95, 80, 145, 152, 0.6, "centerface")
    neighbour = Face(150, 100, 190, 150, 0.95, "fast_mtcnn")  # touching, not inside: a second face
    merged = one_box_per_face([larger, face, neighbour])
    assert len(merged) == 2
    assert merged[0].box == (95, 80, 145, 152) and merged[0].score == 0.99
    assert merged[0].detector == "fast_mtcnn+centerface"
    assert merged[1] == neighbour
    assert one_box_per_face([face, neighbour]) == (face, neighbour)


def test_synthetic_substitutes_only_confident_plausible_faces() -> None:
    from transforms.replacement import plausible_face

    marks = ((112.0, 118.0), (128.0, 118.0), (120.0, 128.0), (113.0, 138.0), (127.0, 138.0))
    face = Face(100, 100, 140, 150, 0.99, "fast_mtcnn", marks)
    assert plausible_face(face)
    upside_down = Face(100, 100, 140, 150, 0.99, "fast_mtcnn", tuple((x, 250 - y) for x, y in marks))
    assert not plausible_face(upside_down) and not plausible_face(Face(100, 100, 140, 150, 0.99))
    policy = ReplacementPolicy(method="synthetic")
    assert policy.face_method(face) == ("synthetic", "")
    assert policy.face_method(upside_down) == ("gaussian", "low_confidence")
    # Two detectors agreeing stand in for landmarks; a low score never gets a substitute.
    assert policy.face_method(Face(100, 100, 140, 150, 0.95, "fast_mtcnn+centerface")) == ("synthetic", "")
    assert policy.face_method(Face(100, 100, 140, 150, 0.85, "fast_mtcnn+centerface", marks)) == \
        ("gaussian", "low_confidence")
    assert policy.face_method(Face(100, 100, 110, 110, 0.99, "fast_mtcnn", marks)) == ("gaussian", "small")
    assert policy.face_method(face, escalation=2) == ("solid", "escalated")
    # A face whose identity cannot be measured is blurred: a re-detected substitute there could not
    # be proven new. A face too small or not confident keeps that reason.
    assert policy.face_method(face, measurable=False) == ("gaussian", "unmeasurable")
    assert not policy.synthesizes(face, measurable=False) and policy.synthesizes(face)
    assert policy.face_method(upside_down, measurable=False) == ("gaussian", "low_confidence")
    assert policy.face_method(Face(100, 100, 110, 110, 0.99, "fast_mtcnn", marks), measurable=False) == \
        ("gaussian", "small")
    assert ReplacementPolicy().face_method(face, measurable=False) == ("gaussian", "")
    assert ReplacementPolicy().face_method(upside_down) == ("gaussian", "")
    with pytest.raises(ValueError, match="synthetic_min_score"):
        ReplacementPolicy(synthetic_min_score=1.5)
    with pytest.raises(ValueError, match="synthetic_blend"):
        ReplacementPolicy(synthetic_blend="alpha")
    with pytest.raises(ValueError, match="synthetic_match"):
        ReplacementPolicy(synthetic_match="grain")
