"""Match a substituted face to the photograph around it: its edge blur and its sensor noise.

Both are estimated on a ring of original pixels around the replaced region (never on the face
itself) and on the generated face, and only the difference is applied to the generated pixels:
a sharp photo gets a sharp face, a soft one a soft face, a grainy one a grainy face.

- Edge blur (``edge_blur_sigma``): the re-blur gradient ratio at the strongest edges (Zhuo and Sim,
  "Defocus map estimation from a single image", 2011): an edge blurred by a Gaussian of sigma ``s``
  keeps ``R = sqrt(s^2 + s0^2) / s`` of its gradient after a second blur of ``s0``, so
  ``s = s0 / sqrt(R^2 - 1)``; the median over the ring's strongest edges.
- Noise (``noise_sigma``): Immerkaer's Laplacian-difference kernel ("Fast noise variance
  estimation", 1996), whose response to white noise of sigma ``n`` has sigma ``6 n``; the median
  absolute response (robust to the ring's edges and texture) / 0.6745 / 6.
"""

from __future__ import annotations

import numpy as np

MATCHES = ("none", "noise", "sharpness", "sharpness,noise")
REBLUR = 1.0  # s0 of the re-blur, px
MAX_BLUR = 4.0  # no estimate above this (px): beyond it the ring is out of focus, not the face
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an H x W x 3 array, float64."""
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


def _inner(known: np.ndarray, radius: int = 1) -> np.ndarray:
    """Known pixels whose neighbourhood of ``radius`` is known too (no kernel reaches across the mask)."""
    import cv2

    size = 2 * radius + 1
    return cv2.erode(known.astype(np.uint8), np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0).astype(bool)


def noise_sigma(gray: np.ndarray, known: np.ndarray) -> float | None:
    """The noise sigma (grey levels) of ``gray`` (H x W float) over the ``known`` pixels; None when
    fewer than 32 of them are usable."""
    import cv2

    inner = _inner(known)
    if inner.sum() < 32:
        return None
    response = cv2.filter2D(np.ascontiguousarray(gray, np.float64), -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT)
    return float(np.median(np.abs(response[inner])) / 0.6745 / 6.0)


def edge_blur_sigma(gray: np.ndarray, known: np.ndarray, share: float = 0.1) -> float | None:
    """The Gaussian blur sigma (px) of the strongest edges of ``gray`` over the ``known`` pixels:
    the median estimate over the top ``share`` of gradients; None without 16 edge pixels."""
    import cv2

    inner = _inner(known, 1 + int(np.ceil(3 * REBLUR)))  # the re-blur and Sobel see known pixels only
    if inner.sum() < 64:
        return None
    gray = np.ascontiguousarray(gray, np.float64)

    def gradient(values: np.ndarray) -> np.ndarray:
        gx = cv2.Sobel(values, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
        gy = cv2.Sobel(values, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
        return np.hypot(gx, gy)

    sharp = gradient(gray)
    soft = gradient(cv2.GaussianBlur(gray, (0, 0), REBLUR, borderType=cv2.BORDER_REFLECT))
    strength = sharp[inner]
    # Edges: the strongest gradients, and clearly above noise (8 grey levels a pixel, Sobel's x8).
    edges = inner & (sharp >= max(np.quantile(strength, 1.0 - share), 64.0))
    if edges.sum() < 16:
        return None
    ratio = sharp[edges] / np.maximum(soft[edges], 1e-9)
    sigma = REBLUR / np.sqrt(np.maximum(ratio**2 - 1.0, 1e-6))
    return float(min(np.median(sigma), MAX_BLUR))


def ring_mask(shape: tuple[int, int], inner_box: tuple[int, int, int, int], face_mask: np.ndarray) -> np.ndarray:
    """The pixels of a window of ``shape`` that are outside ``face_mask`` (bool, the size of
    ``inner_box`` = x1, y1, x2, y2 in window coordinates): the ring the statistics are read on."""
    known = np.ones(shape, bool)
    x1, y1, x2, y2 = inner_box
    known[y1:y2, x1:x2] &= ~face_mask
    return known


def match_photo(generated: np.ndarray, mask: np.ndarray, ring: np.ndarray, ring_known: np.ndarray,
                match: str, seed: int) -> np.ndarray:
    """``generated`` (H x W x 3 uint8) with its ``mask`` pixels blurred and/or grained as the photo's
    ``ring`` (h x w x 3 uint8, its usable pixels ``ring_known``) is.

    ``match``: one of ``MATCHES``. Sharpness: the mask's pixels take a Gaussian blur of
    ``sqrt(ring^2 - face^2)`` when the ring's edges are softer than the face's. Noise: then
    zero-mean Gaussian grain (the same on the three channels, seeded by ``seed``) of
    ``sqrt(ring^2 - face^2)``. Pixels outside ``mask`` are returned as given.
    """
    if match not in MATCHES:
        raise ValueError(f"synthetic_match must be one of {MATCHES}, got {match!r}")
    if match == "none" or not mask.any():
        return generated
    import cv2

    out = generated.astype(np.float64)
    ring_gray = luma(ring)
    if "sharpness" in match:
        target, own = edge_blur_sigma(ring_gray, ring_known), edge_blur_sigma(luma(out), mask)
        if target is not None and own is not None and target > own:
            sigma = float(np.sqrt(target**2 - own**2))
            if sigma >= 0.3:
                blurred = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                out = np.where(mask[..., None], blurred, out)
    if "noise" in match:
        target, own = noise_sigma(ring_gray, ring_known), noise_sigma(luma(out), mask)
        if target is not None and own is not None and target > own:
            grain = np.random.default_rng([seed, 1]).normal(0.0, float(np.sqrt(target**2 - own**2)), mask.shape)
            out = np.where(mask[..., None], out + grain[..., None], out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
