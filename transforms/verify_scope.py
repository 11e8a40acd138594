"""What verification must search on an output: the whole image, or windows around what changed.

``changed_regions_of`` takes the pixels themselves: where the decoded output differs from the
pixels the detect stage searched. A JPEG whose faces were replaced keeps every coded block no
replaced pixel touches (``transforms/jpeg_splice.py``), so its output differs from them only in
and next to the replaced regions; a re-encoded output differs everywhere, and is searched whole.

Outside the windows the output's pixels are the very pixels the detect stage searched, with a
detector that is a superset of the verify detector: on them the verify detector can only find
faces the detect stage found, and every face it found at or above its score thresholds was
replaced, so it lies in a window. A face it found under them scores under the verification
score too (0.7 and CenterFace's 0.2 against 0.9).

What a replacement can change beyond its own pixels lies in the windows. The regions are the
groups of changed pixels and, for each replaced face, the region the replacement owns (its box
grown by ``box_margin`` x its diagonal, about 0.28 of its side on every side); a window is a region
grown on every side by ``context`` (0.5) times its longer side, at least ``min_context`` pixels.
There the verify detector searches the output at full resolution: a replaced face still found is
inside its own region, with at least its own side of context around it; a neighbour the replaced
face hid from non-maximum suppression overlaps the face's box with IoU >= 0.3, so its side is under
1.83 times the face's and it reaches at most 0.83 of the face's side beyond that box, 0.55 beyond
the owned region, less than the 0.78 (half of the region's side, at least 1.56 face sides) the
window adds. Windows that overlap are merged; where they would cover more than ``max_share`` of the
image, the whole image is searched instead (crowds, and re-encoded outputs, changed everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]

VERIFY_SCOPES = ("regions", "full")
WINDOW_CONTEXT = 0.5
WINDOW_MIN_CONTEXT = 16
WINDOW_MAX_SHARE = 0.7
MAX_REGIONS = 512


def changed_mask(original: np.ndarray, anonymized: np.ndarray) -> np.ndarray:
    """Per pixel, whether any channel differs between two images of the same shape (H x W [x C])."""
    if original.shape != anonymized.shape:
        raise ValueError(f"shapes differ: {original.shape} vs {anonymized.shape}")
    difference = cv2.absdiff(np.ascontiguousarray(original), np.ascontiguousarray(anonymized))
    if difference.ndim == 3:  # any channel: the channels' sum (saturating at 255) is not 0
        difference = cv2.transform(difference, np.ones((1, difference.shape[2]), np.float32))
    return np.asarray(difference > 0)


def changed_boxes(mask: np.ndarray) -> tuple[Box, ...]:
    """The ``(x1, y1, x2, y2)`` bounding box (exclusive ends) of each 8-connected group of True pixels."""
    if not mask.any():
        return ()
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, w, h, _ in stats[1:count]:  # label 0 is the background
        boxes.append((int(x), int(y), int(x + w), int(y + h)))
    return tuple(sorted(boxes))


def changed_regions_of(mask: np.ndarray, owned: Sequence[Box] = ()) -> tuple[Box, ...]:
    """``changed_boxes`` of a change mask with the ``owned`` regions of the replaced faces, or the
    whole image as one box where the changes are everywhere (over ``WINDOW_MAX_SHARE`` of the
    pixels, or more than ``MAX_REGIONS`` groups: a re-encoded output)."""
    height, width = mask.shape
    whole = ((0, 0, width, height),)
    if mask.mean() > WINDOW_MAX_SHARE:
        return whole
    boxes = changed_boxes(mask)
    if len(boxes) > MAX_REGIONS:
        return whole
    owned_boxes = {(int(x1), int(y1), int(x2), int(y2)) for x1, y1, x2, y2 in owned if x2 > x1 and y2 > y1}
    return tuple(sorted(set(boxes) | owned_boxes))


def _overlap(a: Box, b: Box) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _merged(boxes: list[Box]) -> list[Box]:
    """Boxes merged into their bounding box while any two overlap or touch; the result is disjoint."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in merged:
            for i, other in enumerate(out):
                if _overlap(box, other):
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]),
                              max(box[3], other[3]))
                    changed = True
                    break
            else:
                out.append(box)
        merged = out
    return sorted(merged)


def verify_windows(changed: tuple[Box, ...], width: int, height: int, context: float = WINDOW_CONTEXT,
                   min_context: int = WINDOW_MIN_CONTEXT,
                   max_share: float = WINDOW_MAX_SHARE) -> tuple[Box, ...] | None:
    """Disjoint windows, clipped to the image, that hold every changed box with its context; None
    when they would cover more than ``max_share`` of the image (search it whole). No change: ()."""
    if not changed:
        return ()
    grown = []
    for x1, y1, x2, y2 in changed:
        pad = max(min_context, int(np.ceil(context * max(x2 - x1, y2 - y1))))
        grown.append((max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad)))
    # On the 32 px grid (CenterFace's input sides are multiples of 32: a window is not rescaled).
    grown = [(x1 // 32 * 32, y1 // 32 * 32, min(width, -(-x2 // 32) * 32), min(height, -(-y2 // 32) * 32))
             for x1, y1, x2, y2 in grown]
    windows = _merged(grown)
    area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in windows)
    if area > max_share * width * height:
        return None
    return tuple(windows)
