"""Matching a substitute to the photo around it: the blur and noise estimators, and what is applied."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from transforms.photo_match import edge_blur_sigma, match_photo, noise_sigma, ring_mask


def _checkers(size: int = 120, cell: int = 20) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.where(((xx // cell) + (yy // cell)) % 2 == 0, 60.0, 190.0)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(np.rint(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_edge_blur_grows_with_the_blur_and_ignores_the_unknown_pixels() -> None:
    sharp = _checkers()
    known = np.ones(sharp.shape, bool)
    estimates = [edge_blur_sigma(cv2.GaussianBlur(sharp, (0, 0), s) if s else sharp, known) for s in (0, 1, 2, 3)]
    assert all(e is not None for e in estimates)
    values = [float(e) for e in estimates if e is not None]
    assert values == sorted(values) and values[-1] - values[0] > 1.8
    # In quadrature the estimator's own offset cancels: sqrt(est(3)^2 - est(0)^2) is about 3.
    assert abs(np.sqrt(values[3] ** 2 - values[0] ** 2) - 3.0) < 0.4
    # The pixels marked unknown are never looked at: a sharp patch there changes nothing.
    soft = cv2.GaussianBlur(sharp, (0, 0), 2)
    mixed = soft.copy()
    mixed[40:80, 40:80] = sharp[40:80, 40:80]
    known[38:82, 38:82] = False
    assert edge_blur_sigma(mixed, known) == edge_blur_sigma(soft, known)
    assert edge_blur_sigma(np.full((40, 40), 128.0), np.ones((40, 40), bool)) is None  # no edge at all


def test_noise_sigma_reads_the_grain_not_the_edges() -> None:
    rng = np.random.default_rng(0)
    known = np.ones((120, 120), bool)
    for sigma in (0.0, 2.0, 5.0):
        noisy = _checkers() + rng.normal(0.0, sigma, (120, 120))
        estimate = noise_sigma(noisy, known)
        assert estimate is not None and abs(estimate - sigma) < 0.25 + 0.05 * sigma
    assert noise_sigma(np.zeros((4, 4)), np.ones((4, 4), bool)) is None  # too few pixels


def _scene(ring_blur: float, ring_noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A photo of checkers (the given blur and noise) with a clean, sharp 'face' in its middle."""
    rng = np.random.default_rng(1)
    photo = _checkers(160)
    if ring_blur:
        photo = cv2.GaussianBlur(photo, (0, 0), ring_blur)
    photo = photo + rng.normal(0.0, ring_noise, photo.shape)
    mask = np.zeros((80, 80), bool)
    mask[10:70, 10:70] = True
    generated = _rgb(_checkers(80, 10))
    known = ring_mask((160, 160), (40, 40, 120, 120), mask)
    return generated, mask, _rgb(photo), known


def test_a_soft_photo_gets_a_soft_face_and_a_sharp_one_keeps_it_sharp() -> None:
    generated, mask, soft_ring, known = _scene(2.5, 0.0)
    softened = match_photo(generated, mask, soft_ring, known, "sharpness", seed=0)
    face_before = edge_blur_sigma(generated[..., 0].astype(float), mask)
    face_after = edge_blur_sigma(softened[..., 0].astype(float), mask)
    ring = edge_blur_sigma(soft_ring[..., 0].astype(float), known)
    assert face_before is not None and face_after is not None and ring is not None
    assert face_after > face_before + 1.0 and abs(face_after - ring) < 0.6
    assert np.array_equal(softened[~mask], generated[~mask])  # outside the mask: as given
    _, _, sharp_ring, _ = _scene(0.0, 0.0)
    assert np.array_equal(match_photo(generated, mask, sharp_ring, known, "sharpness", seed=0), generated)


def test_a_grainy_photo_gets_grain_and_a_clean_one_none() -> None:
    generated, mask, grainy_ring, known = _scene(0.0, 4.0)
    grained = match_photo(generated, mask, grainy_ring, known, "noise", seed=0)
    estimate = noise_sigma(grained[..., 0].astype(float), mask)
    assert estimate is not None and abs(estimate - 4.0) < 0.8
    assert np.array_equal(grained[~mask], generated[~mask])
    assert np.array_equal(grained, match_photo(generated, mask, grainy_ring, known, "noise", seed=0))  # seeded
    _, _, clean_ring, _ = _scene(0.0, 0.0)
    assert np.array_equal(match_photo(generated, mask, clean_ring, known, "noise", seed=0), generated)
    assert np.array_equal(match_photo(generated, mask, grainy_ring, known, "none", seed=0), generated)
    with pytest.raises(ValueError, match="synthetic_match"):
        match_photo(generated, mask, grainy_ring, known, "grain", seed=0)
