"""Image-level metrics of what anonymization changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

# --- Image quality of the output against the original (PSNR, SSIM, inside and outside faces) ---

PSNR_CAP_DB = 100.0
"""PSNR of identical pixels (MSE 0) has no finite value; it is reported as this cap."""

_SSIM_WINDOW = 7
_SSIM_K1, _SSIM_K2, _DATA_RANGE = 0.01, 0.03, 255.0


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def psnr(original: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) over all channels of the pixels in ``mask``.

    Args:
        original, other: arrays of the same shape (H, W) or (H, W, C), values 0-255.
        mask: optional (H, W) booleans; only those pixels count.

    Returns:
        The PSNR, ``PSNR_CAP_DB`` for identical pixels, or NaN when ``mask`` selects nothing.

    Raises:
        ValueError: when the shapes differ.
    """
    if original.shape != other.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {other.shape}")
    diff = original.astype(np.float64) - other.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * float(np.log10(_DATA_RANGE**2 / mse)))


def ssim_map(original: np.ndarray, other: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """The SSIM map of two grey images (Wang et al. 2004: 7x7 uniform window, sample
    covariance, K1 0.01, K2 0.03, range 255; as scikit-image's ``structural_similarity``), computed
    in ``dtype``."""
    import cv2

    def uniform_filter(values: np.ndarray, size: int) -> np.ndarray:
        # OpenCV's normalized box filter: scipy.ndimage.uniform_filter's mean (its reflect border is
        # BORDER_REFLECT; only windows inside the image are averaged), about 9x faster.
        return np.asarray(cv2.boxFilter(values, -1, (size, size), borderType=cv2.BORDER_REFLECT))

    if original.shape != other.shape or original.ndim != 2:
        raise ValueError(f"expected two grey images of one shape, got {original.shape}, {other.shape}")
    x: np.ndarray = original.astype(dtype)
    y: np.ndarray = other.astype(dtype)
    n = _SSIM_WINDOW * _SSIM_WINDOW
    cov_norm = n / (n - 1)
    ux = uniform_filter(x, _SSIM_WINDOW)
    uy = uniform_filter(y, _SSIM_WINDOW)
    vx = cov_norm * (uniform_filter(x * x, _SSIM_WINDOW) - ux * ux)
    vy = cov_norm * (uniform_filter(y * y, _SSIM_WINDOW) - uy * uy)
    vxy = cov_norm * (uniform_filter(x * y, _SSIM_WINDOW) - ux * uy)
    c1 = (_SSIM_K1 * _DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * _DATA_RANGE) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


SSIM_TILE = 32


def sparse_ssim_map(original: np.ndarray, other: np.ndarray, differs: np.ndarray) -> np.ndarray:
    """The SSIM map (float32) of the luma of two RGB images, computed only in the ``SSIM_TILE``
    tiles that hold a window reaching a pixel where ``differs``: a window of identical pixels has
    SSIM exactly 1 (numerator and denominator are the same products), so every other value is 1.
    Each run of such tiles along a tile row is computed on its crop with a margin of the window's
    reach, which gives the values the whole-image map has there (the border reflection only
    matters at the image's own edges, which the crop keeps)."""
    import cv2

    height, width = differs.shape
    values = np.ones((height, width), np.float32)
    if not differs.any():
        return values
    reach = _SSIM_WINDOW // 2
    near = cv2.dilate(differs.astype(np.uint8), np.ones((_SSIM_WINDOW, _SSIM_WINDOW), np.uint8))
    tile = SSIM_TILE
    rows, cols = -(-height // tile), -(-width // tile)
    padded = np.zeros((rows * tile, cols * tile), np.uint8)
    padded[:height, :width] = near
    touched: np.ndarray = np.asarray(padded.reshape(rows, tile, cols, tile).any(axis=(1, 3)))

    def luma_map(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        crop_a = original[y0:y1, x0:x1].astype(np.float32)
        crop_b = other[y0:y1, x0:x1].astype(np.float32)
        return ssim_map(_luma(crop_a), _luma(crop_b), np.float32)

    if touched.mean() > 0.6:  # most of the image: one whole-image map is cheaper
        return luma_map(0, height, 0, width)
    for r in np.nonzero(touched.any(axis=1))[0]:
        line = np.concatenate(([False], touched[r], [False]))
        edges = np.nonzero(line[1:] != line[:-1])[0]
        for c0, c1 in zip(edges[::2], edges[1::2], strict=True):
            y0, y1 = int(r) * tile, min(height, (int(r) + 1) * tile)
            x0, x1 = int(c0) * tile, min(width, int(c1) * tile)
            cy0, cx0 = max(0, y0 - reach), max(0, x0 - reach)
            part = luma_map(cy0, min(height, y1 + reach), cx0, min(width, x1 + reach))
            values[y0:y1, x0:x1] = part[y0 - cy0: y1 - cy0, x0 - cx0: x1 - cx0]
    return values


def _window_centres(shape: tuple[int, ...], mask: np.ndarray | None) -> np.ndarray:
    import cv2

    keep = np.zeros(shape, dtype=bool)
    pad = (_SSIM_WINDOW - 1) // 2
    keep[pad:shape[0] - pad, pad:shape[1] - pad] = True
    if mask is not None:
        # A window centre is kept when its whole window lies inside the mask (a 7x7 erosion; outside
        # the image counts as inside, as scipy's minimum_filter with cval=1 did).
        window = np.ones((_SSIM_WINDOW, _SSIM_WINDOW), np.uint8)
        keep &= cv2.erode(mask.astype(np.uint8), window, borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)
    return keep


def _masked_mean(values: np.ndarray, keep: np.ndarray) -> float:
    return float(values[keep].mean(dtype=np.float64)) if keep.any() else float("nan")


def ssim(original: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of two grey images over the windows that lie wholly inside ``mask`` (image borders
    of half a window excluded, as scikit-image does); NaN when no window is left."""
    values = ssim_map(original, other)
    return _masked_mean(values, _window_centres(values.shape, mask))


@dataclass(frozen=True)
class ImageQuality:
    """PSNR (dB) and SSIM of an output against its original, whole image and outside the faces.

    Values are NaN where undefined (no pixel outside the replaced regions).
    """

    psnr: float
    ssim: float
    psnr_outside_faces: float
    ssim_outside_faces: float


def outside_mask(size: tuple[int, int], regions: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """(H, W) booleans: True outside every ``(x1, y1, x2, y2)`` region (the replaced areas)."""
    width, height = size
    mask = np.ones((height, width), dtype=bool)
    for x1, y1, x2, y2 in regions:
        mask[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = False
    return mask


def image_quality(original: Image.Image, output: Image.Image,
                  regions: Sequence[tuple[int, int, int, int]]) -> ImageQuality:
    """Compare the decoded, re-encoded ``output`` with the ``original``.

    Outside the replaced ``regions`` the only change is the encoder's, so a low figure there means
    the encoder settings lose too much. SSIM is computed on luma (BT.601), PSNR on RGB.

    Raises:
        ValueError: when the sizes differ.
    """
    if original.size != output.size:
        raise ValueError(f"sizes differ: {original.size} vs {output.size}")
    import cv2

    a, b = np.asarray(original.convert("RGB")), np.asarray(output.convert("RGB"))
    mask = outside_mask(original.size, regions)
    if np.array_equal(a, b):
        # The same pixels (a face-less JPEG kept as it was): what the computation below gives, without
        # it: PSNR at its cap and SSIM 1 wherever a pixel or a whole window is left to average.
        return ImageQuality(psnr=PSNR_CAP_DB if a.size else float("nan"),
                            ssim=1.0 if _window_centres(mask.shape, None).any() else float("nan"),
                            psnr_outside_faces=PSNR_CAP_DB if mask.any() else float("nan"),
                            ssim_outside_faces=1.0 if _window_centres(mask.shape, mask).any() else float("nan"))
    error = cv2.absdiff(a, b).astype(np.float32)
    # Per-pixel MSE over RGB, computed once (float32: exact for squares of 0-255 and their sums).
    squared = cv2.transform(error * error, np.full((1, 3), 1 / 3, np.float32))
    values = sparse_ssim_map(a, b, squared > 0)
    return ImageQuality(psnr=_psnr_of(squared, None), ssim=_masked_mean(values, _window_centres(values.shape, None)),
                        psnr_outside_faces=_psnr_of(squared, mask),
                        ssim_outside_faces=_masked_mean(values, _window_centres(values.shape, mask)))


def _psnr_of(squared: np.ndarray, mask: np.ndarray | None) -> float:
    selected = squared[mask] if mask is not None else squared
    if selected.size == 0:
        return float("nan")
    mse = float(selected.mean(dtype=np.float64))
    return PSNR_CAP_DB if mse == 0.0 else min(PSNR_CAP_DB, 10.0 * float(np.log10(_DATA_RANGE**2 / mse)))
