"""A labelled set of scenes with visible text, made here: scikit-image's sample photos with licence
plates (three formats), name badges and signs composited in at several sizes, fonts and angles.

Each labelled line of text has its box (the axis-aligned box of its rotated ink box, in scene
pixels) and its character height (the cap height it was rendered at, px). ``coverage`` is the
share of a label's box that a set of replaced boxes covers: the pixels a solid fill replaces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data as skdata

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry",
          "hubble_deep_field", "grass", "gravel", "brick", "horse")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONT_NAMES = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "LiberationSans-Bold.ttf",
              "LiberationMono-Regular.ttf")
KINDS = ("plate_eu", "plate_uk", "plate_us", "badge", "sign")
HEIGHTS = (8, 10, 12, 14, 16, 20, 24, 32, 48)
BANDS = ((0, 12), (12, 16), (16, 24), (24, 40), (40, 1000))
SCENE_SIZE = (640, 480)


@dataclass(frozen=True)
class TextLabel:
    """One rendered line of text: its kind, the string, its box in the scene and its character height."""

    kind: str
    text: str
    box: tuple[float, float, float, float]
    char_height: int
    angle: float
    font: str


@dataclass(frozen=True)
class TextScene:
    """A photo with text composited in, and its labels."""

    name: str
    image: Image.Image
    labels: tuple[TextLabel, ...]


def fonts() -> list[str]:
    """The TrueType fonts present (DejaVu, Liberation), else PIL's default font (``default``)."""
    found = [str(d / n) for n in FONT_NAMES for d in FONT_DIRS if (d / n).is_file()]
    return found or ["default"]


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size) if name == "default" else ImageFont.truetype(name, size)


def _sized_font(name: str, cap_height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font at the size whose capital H is ``cap_height`` px tall."""
    size = cap_height
    for _ in range(6):
        x1, y1, x2, y2 = _font(name, size).getbbox("H")
        size = max(4, round(size * cap_height / max(1, y2 - y1)))
    return _font(name, size)


def _random_string(rng: np.random.Generator, pattern: str) -> str:
    """``A``: a capital letter, ``9``: a digit, anything else kept."""
    letters, digits = "ABCDEFGHJKLMNPRSTUVWXYZ", "0123456789"
    return "".join(letters[rng.integers(len(letters))] if c == "A" else
                   digits[rng.integers(10)] if c == "9" else c for c in pattern)


NAMES = ("ANNA", "Jonas Berg", "M. Dupont", "Priya", "KOWALSKI", "Li Wei", "Sam O'Neil", "Fatima")
STREETS = ("No. 42", "Elm Street", "ROSE LANE 7", "Gate B12", "Platz 3", "EXIT", "Bakery", "Unit 9")


Line = tuple[str, tuple[int, int, int, int], int]


def _item(kind: str, rng: np.random.Generator, font: str, height: int) -> tuple[Image.Image, list[Line]]:
    """An RGBA item (plate, badge or sign) and its lines: text, ink box in item pixels, cap height."""
    lines: list[tuple[str, int, tuple[int, int, int]]] = []  # text, cap height, colour
    if kind == "plate_eu":
        text, bg, fg = _random_string(rng, "AA-999-AA"), (245, 245, 245), (15, 15, 15)
    elif kind == "plate_uk":
        text, bg, fg = _random_string(rng, "AA99 AAA"), (250, 205, 30), (10, 10, 10)
    elif kind == "plate_us":
        text, bg, fg = _random_string(rng, "9AAA999"), (235, 240, 250), (20, 40, 120)
    elif kind == "badge":
        text, bg, fg = NAMES[rng.integers(len(NAMES))], (255, 255, 255), (20, 20, 20)
    else:
        text, bg, fg = STREETS[rng.integers(len(STREETS))], (20, 90, 50), (250, 250, 250)
    if kind == "badge":
        lines.append(("HELLO my name is", max(6, height // 2), (255, 255, 255)))
    lines.append((text, height, fg))
    pad = max(4, height // 2)
    sized = [(t, _sized_font(font, h), h, c) for t, h, c in lines]
    boxes = [f.getbbox(t) for t, f, _, _ in sized]
    width = max(b[2] - b[0] for b in boxes) + 2 * pad + (pad if kind == "plate_eu" else 0)
    total = sum(b[3] - b[1] for b in boxes) + pad * (len(lines) + 1)
    item = Image.new("RGBA", (int(width), int(total)), bg + (255,))
    draw = ImageDraw.Draw(item)
    draw.rectangle((0, 0, item.width - 1, item.height - 1), outline=(40, 40, 40, 255), width=max(1, height // 8))
    left = pad + (pad if kind == "plate_eu" else 0)
    if kind == "plate_eu":
        draw.rectangle((0, 0, pad, item.height), fill=(0, 50, 160, 255))
    out = []
    y = pad
    for (t, f, h, colour), box in zip(sized, boxes, strict=True):
        if kind == "badge" and h != height:
            draw.rectangle((0, 0, item.width, box[3] - box[1] + 2 * pad * 3 // 4), fill=(200, 20, 30, 255))
        origin = (left - box[0], y - box[1])
        draw.text(origin, t, font=f, fill=colour + (255,))
        ink = draw.textbbox(origin, t, font=f)
        out.append((t, (int(ink[0]), int(ink[1]), int(ink[2]), int(ink[3])), h))
        y += box[3] - box[1] + pad
    return item, out


def _rotated_box(box: Sequence[float], angle: float, size: tuple[int, int], rotated: tuple[int, int]) -> np.ndarray:
    """The 4 corners of ``box`` after PIL's ``rotate(angle, expand=True)`` of an image of ``size``."""
    cx, cy = size[0] / 2, size[1] / 2
    rcx, rcy = rotated[0] / 2, rotated[1] / 2
    a = math.radians(angle)
    corners = np.array([(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])], float)
    dx, dy = corners[:, 0] - cx, corners[:, 1] - cy
    # PIL rotates counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos.
    return np.stack([dx * math.cos(a) + dy * math.sin(a) + rcx, -dx * math.sin(a) + dy * math.cos(a) + rcy], axis=1)


def _photo(name: str) -> Image.Image:
    array = getattr(skdata, name)()
    image = Image.fromarray(array).convert("RGB")
    return image.resize(SCENE_SIZE, Image.Resampling.BILINEAR)


def text_scene(index: int, items: int = 3) -> TextScene:
    """Scene ``index``: a sample photo with ``items`` plates, badges or signs (seeded by ``index``)."""
    rng = np.random.default_rng(1000 + index)
    photo_name = PHOTOS[index % len(PHOTOS)]
    scene = _photo(photo_name)
    available = fonts()
    labels: list[TextLabel] = []
    taken: list[tuple[int, int, int, int]] = []
    for n in range(items):
        kind = KINDS[(index + n) % len(KINDS)]
        height = HEIGHTS[(index * items + n) % len(HEIGHTS)]
        font = available[int(rng.integers(len(available)))]
        angle = float(rng.uniform(-15, 15)) if rng.random() < 0.6 else 0.0
        item, lines = _item(kind, rng, font, height)
        rotated = item.rotate(angle, Image.Resampling.BICUBIC, expand=True)
        if rotated.width >= scene.width or rotated.height >= scene.height:
            continue
        for _ in range(30):
            x = int(rng.integers(0, scene.width - rotated.width))
            y = int(rng.integers(0, scene.height - rotated.height))
            place = (x, y, x + rotated.width, y + rotated.height)
            if all(place[2] <= t[0] or t[2] <= place[0] or place[3] <= t[1] or t[3] <= place[1] for t in taken):
                break
        else:
            continue
        taken.append(place)
        scene.paste(rotated, (x, y), rotated)
        for text, ink, h in lines:
            corners = _rotated_box(ink, angle, item.size, rotated.size) + (x, y)
            box = (float(corners[:, 0].min()), float(corners[:, 1].min()),
                   float(corners[:, 0].max()), float(corners[:, 1].max()))
            labels.append(TextLabel(kind, text, box, h, angle, Path(font).stem))
    return TextScene(f"{index:03d}_{photo_name}", scene, tuple(labels))


def text_scenes(count: int, items: int = 3) -> list[TextScene]:
    """``count`` labelled scenes."""
    return [text_scene(i, items) for i in range(count)]


def coverage(box: Sequence[float], replaced: Sequence[Sequence[float]]) -> float:
    """The share of ``box``'s whole pixels inside the union of ``replaced`` boxes."""
    x1, y1 = int(math.floor(box[0])), int(math.floor(box[1]))
    x2, y2 = int(math.ceil(box[2])), int(math.ceil(box[3]))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    mask = np.zeros((y2 - y1, x2 - x1), bool)
    for r in replaced:
        rx1, ry1 = max(x1, int(math.floor(r[0]))), max(y1, int(math.floor(r[1])))
        rx2, ry2 = min(x2, int(math.ceil(r[2]))), min(y2, int(math.ceil(r[3])))
        if rx2 > rx1 and ry2 > ry1:
            mask[ry1 - y1:ry2 - y1, rx1 - x1:rx2 - x1] = True
    return float(mask.mean())


def band_of(height: int) -> tuple[int, int]:
    """The text-height band (low inclusive, high exclusive) of a character height."""
    return next(b for b in BANDS if b[0] <= height < b[1])
