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
