"""A labelled face set made from scikit-image's public-domain photos, with known face boxes.

The faces of ``astronaut`` (Eileen Collins, NASA) and ``camera`` (the cameraman) are cut with some
context, scaled so that the face box's shorter side spans 16 to 300 px, rotated, and pasted at
known places on busy scikit-image backgrounds; some images have no face at all. The tests and
``benchmarks/detection.py`` use the same generator, so the recall they report is on the same set.
Annotations are written as JSON ``{image: [[x1, y1, x2, y2], ...]}``; WIDER FACE ground-truth text
files are read too.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from transforms.records import box_iou

# Face boxes (x1, y1, x2, y2) in the 512x512 source photos.
FACE_SOURCES: dict[str, tuple[int, int, int, int]] = {
    "astronaut": (181, 62, 268, 172),
    "camera": (199, 119, 254, 192),
}
BACKGROUNDS = ("coffee", "rocket", "brick", "grass", "gravel", "immunohistochemistry",
               "hubble_deep_field", "coins", "page", "text", "clock", "horse", "moon", "retina")
# Bands of the face box's shorter side, px: [low, high).
SIZE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<20", 0.0, 20.0), ("20-40", 20.0, 40.0), ("40-80", 40.0, 80.0), (">=80", 80.0, math.inf))

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class LabelledImage:
    """One generated image (already JPEG round-tripped when asked) and its true face boxes."""

    name: str
    image: Image.Image
    boxes: tuple[Box, ...]


def size_band(short_side: float) -> str:
    """The name of the size band a face of this shorter side falls in."""
    for name, low, high in SIZE_BANDS:
        if low <= short_side < high:
            return name
    return SIZE_BANDS[0][0]


def _photo(name: str) -> Image.Image:
    from skimage import data as skdata

    array = np.asarray(getattr(skdata, name)())
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    return Image.fromarray(array).convert("RGB")


def _background(rng: random.Random, size: tuple[int, int], photos: dict[str, Image.Image]) -> Image.Image:
    name = rng.choice(BACKGROUNDS)
    photo = photos.setdefault(name, _photo(name))
    width, height = size
    scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.6)
    scaled = photo.resize((math.ceil(photo.width * scale), math.ceil(photo.height * scale)),
                          Image.Resampling.BILINEAR)
    x = rng.randint(0, scaled.width - width)
    y = rng.randint(0, scaled.height - height)
    canvas = scaled.crop((x, y, x + width, y + height))
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return canvas


def _face_patch(rng: random.Random, face_size: float, canvas: tuple[int, int],
                photos: dict[str, Image.Image], hard: bool = False) -> tuple[Image.Image, Box]:
    """A face cut with context, scaled to ``face_size`` (short side), rotated; and its face box
    in patch coordinates (upright, the face's size, centred on the rotated face centre).

    ``hard``: also low contrast, under- or over-exposed, out of focus and rotated up to 30 degrees.
    """
    name = rng.choice(sorted(FACE_SOURCES))
    photo = photos.setdefault(name, _photo(name))
    fx1, fy1, fx2, fy2 = FACE_SOURCES[name]
    fw, fh = fx2 - fx1, fy2 - fy1
    scale = face_size / min(fw, fh)
    # Context around the face (hair, shoulders), less of it when the face is large.
    room = min(canvas) / (max(fw, fh) * scale)
    context = max(0.05, min(rng.uniform(0.3, 0.7), (room / 1.5 - 1) / 2))
    cx1 = max(0, fx1 - context * fw)
    cy1 = max(0, fy1 - context * fh)
    cx2 = min(photo.width, fx2 + context * fw)
    cy2 = min(photo.height, fy2 + context * fh)
    crop = photo.crop((int(cx1), int(cy1), math.ceil(cx2), math.ceil(cy2)))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        fx1, fx2 = crop.width - (fx2 - int(cx1)) + int(cx1), crop.width - (fx1 - int(cx1)) + int(cx1)
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.75, 1.2))
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    crop = crop.resize(size, Image.Resampling.LANCZOS)
    if hard:
        crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.35, 0.8))
        crop = ImageEnhance.Brightness(crop).enhance(rng.choice([rng.uniform(0.35, 0.6), rng.uniform(1.3, 1.6)]))
        crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.06) * face_size))
    # Face centre and size in the scaled crop.
    centre = (((fx1 + fx2) / 2 - int(cx1)) * scale, ((fy1 + fy2) / 2 - int(cy1)) * scale)
    angle = rng.uniform(-30.0, 30.0) if hard else rng.uniform(-15.0, 15.0)
    rgba = crop.convert("RGBA")
    rotated = rgba.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    # Where the centre went: rotate about the crop centre, shift by the expansion.
    theta = math.radians(angle)
    dx, dy = centre[0] - crop.width / 2, centre[1] - crop.height / 2
    rx = dx * math.cos(theta) + dy * math.sin(theta) + rotated.width / 2
    ry = -dx * math.sin(theta) + dy * math.cos(theta) + rotated.height / 2
    half_w, half_h = fw * scale / 2, fh * scale / 2
    return rotated, (rx - half_w, ry - half_h, rx + half_w, ry + half_h)


def _jpeg_round_trip(image: Image.Image, quality: int = 90) -> tuple[Image.Image, bytes]:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    data = buffer.getvalue()
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    return decoded.convert("RGB"), data


def _face_sizes(rng: random.Random, count: int, smallest: float, largest: float) -> list[float]:
    """Face sizes spread evenly over the size bands (log-uniform within each)."""
    bands = [(max(low, smallest), min(high, largest)) for _, low, high in SIZE_BANDS
             if high > smallest and low < largest]
    sizes = []
    for i in range(count):
        low, high = bands[i % len(bands)]
        sizes.append(math.exp(rng.uniform(math.log(low), math.log(high))))
    rng.shuffle(sizes)
    return sizes


def generate_labelled_set(with_faces: int = 40, faceless: int = 10, size: tuple[int, int] = (640, 480),
                          seed: int = 0, smallest: float = 16.0, largest: float = 300.0,
                          hard: bool = False) -> Iterator[tuple[LabelledImage, bytes]]:
    """Yield labelled images (decoded from their JPEG bytes) and the JPEG bytes.

    ``hard`` makes faces low-contrast, badly exposed, out of focus and more rotated, and saves at
    JPEG quality 60: a set on which detectors and their settings differ.

    Raises:
        ValueError: on a negative count or a size range outside 8-1000 px.
    """
    if with_faces < 0 or faceless < 0:
        raise ValueError(f"with_faces and faceless must be >= 0, got {with_faces}, {faceless}")
    if not 8 <= smallest < largest <= 1000:
        raise ValueError(f"smallest/largest must satisfy 8 <= smallest < largest <= 1000, "
                         f"got {smallest}, {largest}")
    rng = random.Random(seed)
    photos: dict[str, Image.Image] = {}
    # Each image gets 1-3 faces; their sizes cycle through the bands.
    counts = [rng.randint(1, 3) for _ in range(with_faces)]
    sizes = _face_sizes(rng, sum(counts), smallest, largest)
    cursor = 0
    for index in range(with_faces):
        canvas = _background(rng, size, photos)
        boxes: list[Box] = []
        taken: list[tuple[int, int, int, int]] = []
        for face_size in sorted(sizes[cursor: cursor + counts[index]], reverse=True):
            patch, (bx1, by1, bx2, by2) = _face_patch(rng, face_size, size, photos, hard)
            if patch.width > size[0] or patch.height > size[1]:
                continue
            for _ in range(50):
                x = rng.randint(0, size[0] - patch.width)
                y = rng.randint(0, size[1] - patch.height)
                rect = (x, y, x + patch.width, y + patch.height)
                if all(rect[2] <= t[0] or rect[0] >= t[2] or rect[3] <= t[1] or rect[1] >= t[3]
                       for t in taken):
                    canvas.paste(patch, (x, y), patch)
                    taken.append(rect)
                    boxes.append((bx1 + x, by1 + y, bx2 + x, by2 + y))
                    break
        cursor += counts[index]
        image, data = _jpeg_round_trip(canvas, 60 if hard else 90)
        yield LabelledImage(f"faces_{index:04d}.jpg", image, tuple(boxes)), data
    for index in range(faceless):
        image, data = _jpeg_round_trip(_background(rng, size, photos), 60 if hard else 90)
        yield LabelledImage(f"noface_{index:04d}.jpg", image, ()), data


def write_labelled_set(folder: Path, **kwargs: object) -> Path:
    """Write the generated set as JPEGs plus ``annotations.json``; returns the annotation path."""
    folder.mkdir(parents=True, exist_ok=True)
    annotations: dict[str, list[list[float]]] = {}
    for item, data in generate_labelled_set(**kwargs):  # type: ignore[arg-type]
        (folder / item.name).write_bytes(data)
        annotations[item.name] = [[round(v, 2) for v in box] for box in item.boxes]
    path = folder / "annotations.json"
    path.write_text(json.dumps(annotations, indent=1))
    return path


def read_annotations(path: Path) -> dict[str, list[Box]]:
    """Read box annotations: JSON ``{image: [[x1, y1, x2, y2], ...]}`` or a WIDER FACE
    ground-truth text file (name, count, then ``x y w h ...`` lines).

    Raises:
        ValueError: when the file is neither format.
    """
    text = path.read_text()
    if text.lstrip().startswith("{"):
        raw = json.loads(text)
        return {name: [tuple(float(v) for v in box[:4]) for box in boxes]  # type: ignore[misc]
                for name, boxes in raw.items()}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    out: dict[str, list[Box]] = {}
    i = 0
    try:
        while i < len(lines):
            name, count = lines[i], int(lines[i + 1])
            i += 2
            boxes: list[Box] = []
            for line in lines[i: i + max(count, 1)]:
                x, y, w, h = (float(v) for v in line.split()[:4])
                if count > 0 and w > 0 and h > 0:
                    boxes.append((x, y, x + w, y + h))
            i += max(count, 1)
            out[name] = boxes
    except (IndexError, ValueError) as error:
        raise ValueError(f"{path}: not JSON and not a WIDER FACE ground-truth file ({error})") from None
    return out



def covered_share(truth: Box, regions: list[Box]) -> float:
    """Share of ``truth``'s pixels inside the union of ``regions`` (pixels replaced)."""
    x1, y1 = math.floor(truth[0]), math.floor(truth[1])
    x2, y2 = math.ceil(truth[2]), math.ceil(truth[3])
    if x2 <= x1 or y2 <= y1:
        return 0.0
    mask = np.zeros((y2 - y1, x2 - x1), dtype=bool)
    for r in regions:
        rx1, ry1 = max(0, math.floor(r[0]) - x1), max(0, math.floor(r[1]) - y1)
        rx2, ry2 = min(x2 - x1, math.ceil(r[2]) - x1), min(y2 - y1, math.ceil(r[3]) - y1)
        if rx2 > rx1 and ry2 > ry1:
            mask[ry1:ry2, rx1:rx2] = True
    return float(mask.mean())


@dataclass
class BandCounts:
    """Faces per size band and how many were found (by box) and anonymized (by pixels)."""

    faces: dict[str, int]
    found: dict[str, int]
    anonymized: dict[str, int]
    detections: int = 0
    true_detections: int = 0
    faceless_images: int = 0
    faceless_false_positives: int = 0

    @classmethod
    def empty(cls) -> BandCounts:
        names = [name for name, _, _ in SIZE_BANDS]
        return cls({n: 0 for n in names}, {n: 0 for n in names}, {n: 0 for n in names})

    def recall(self, band: str) -> float:
        return self.found[band] / self.faces[band] if self.faces[band] else math.nan

    def anonymization_recall(self, band: str) -> float:
        return self.anonymized[band] / self.faces[band] if self.faces[band] else math.nan

    @property
    def precision(self) -> float:
        return self.true_detections / self.detections if self.detections else math.nan


def replaced_region(box: Box, margin: float = 0.2) -> Box:
    """The region our replacement covers for a detected ``box``: grown by ``margin`` x its
    diagonal on every side (``box_margin``)."""
    d = math.hypot(box[2] - box[0], box[3] - box[1]) * margin
    return (box[0] - d, box[1] - d, box[2] + d, box[3] + d)


def deface_region(box: Box, mask_scale: float = 1.3) -> Box:
    """The region deface 1.5.0 blurs for a detected ``box`` (its ``scale_bb``)."""
    s = mask_scale - 1.0
    w, h = box[2] - box[0], box[3] - box[1]
    return (box[0] - w * s, box[1] - h * s, box[2] + w * s, box[3] + h * s)


def grow(box: Box, factor: float) -> Box:
    """``box`` scaled by ``factor`` about its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def score_image(counts: BandCounts, truth: list[Box], detections: list[Box], replaced: list[Box],
                iou_threshold: float = 0.5, covered_threshold: float = 0.9) -> None:
    """Add one image's outcome to ``counts``.

    A true face is *found* when an unmatched detection overlaps it with IoU >= ``iou_threshold``
    (greedy, best overlap first), and *anonymized* when at least ``covered_threshold`` of its
    pixels lie inside the ``replaced`` regions (the boxes as the anonymizer grows them).
    """
    pairs = sorted(((box_iou(t, d), ti, di) for ti, t in enumerate(truth) for di, d in enumerate(detections)),
                   reverse=True)
    used_t: set[int] = set()
    used_d: set[int] = set()
    for overlap, ti, di in pairs:
        if overlap < iou_threshold:
            break
        if ti in used_t or di in used_d:
            continue
        used_t.add(ti)
        used_d.add(di)
    for ti, t in enumerate(truth):
        band = size_band(min(t[2] - t[0], t[3] - t[1]))
        counts.faces[band] += 1
        counts.found[band] += ti in used_t
        counts.anonymized[band] += covered_share(t, replaced) >= covered_threshold
    counts.detections += len(detections)
    # A detection of a face below 20 px that matches nothing is not counted against precision
    # when it overlaps a true face (those faces are hard to box exactly).
    counts.true_detections += len(used_d) + sum(
        1 for di, d in enumerate(detections) if di not in used_d and any(box_iou(t, d) > 0.2 for t in truth))
    if not truth:
        counts.faceless_images += 1
        counts.faceless_false_positives += len(detections)
