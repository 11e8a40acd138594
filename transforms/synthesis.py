"""Synthetic face substitution: every face is replaced by a generated one that does not exist.

The original face region (the detected box plus an ellipse grown by the box margin) is masked
out before a generator sees the crop, and the generator's output is pasted there with weight
exactly 1: no original pixel inside the mask can reach the output. Outside the mask a narrow
band is feathered from the generator's output into the original surroundings, so no seam shows.

Generators (``FaceGenerator``):

- ``ParametricFaceGenerator`` (the default, no weights; ``parametric-v2``): fills the masked region
  from its border (push-pull inpainting), then renders a face from a parametric model (face and
  jaw shape, skin tone and shading, hairline, fringe and hair around the face, eye size, shape and
  tilt, brows, nose length and width, mouth position, width, lips and smile, teeth, beard,
  moustache, glasses; every parameter drawn from a seeded random generator, none from the
  original), warped onto the original's five MTCNN landmarks by a similarity transform, and
  matched to the surroundings' exposure, colour cast, saturation, lighting gradient and noise.
- ``ModelFaceGenerator``: a TorchScript or ONNX model at a local path or fsspec URL, with the
  contract in ``MODEL_CONTRACT`` (checked on load, before any image is processed).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from transforms.photo_match import match_photo, ring_mask
from transforms.records import Face
from transforms.storage import DEFAULT_STORAGE, Storage

# The five-point face template (eyes, nose tip, mouth corners) in a 112 x 112 canonical frame,
# as used by common face-alignment pipelines; MTCNN gives its landmarks in this order.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)

MODEL_CONTRACT = (
    "forward(image, mask, landmarks) -> image; image: float32 [1, 3, S, S] RGB in [-1, 1] with the "
    "masked pixels set to 0; mask: float32 [1, 1, S, S], 1 where the face must be generated; "
    "landmarks: float32 [1, 5, 2], (x, y) of eyes, nose tip, mouth corners in [0, 1] of the crop; "
    "output: float32 [1, 3, S, S] RGB in [-1, 1]"
)


class FaceGenerator(Protocol):
    """Makes a replacement crop for one face.

    ``generate`` gets the crop (``H x W x 3`` uint8 RGB) with the face region set to 0, the mask
    (``H x W`` bool, True where a face must be generated), the five landmarks in crop pixels
    (``5 x 2`` float) and a seed; it returns an ``H x W x 3`` uint8 RGB crop.
    """

    name: str

    def generate(self, crop: np.ndarray, mask: np.ndarray, landmarks: np.ndarray,
                 seed: int) -> np.ndarray: ...


class GeneratorError(ValueError):
    """A generator that cannot be loaded or does not follow the contract."""


# ---------------------------------------------------------------------------------------------
# Geometry and colour helpers.


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, shift) that best maps ``src`` onto ``dst``."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - src_mean, dst - dst_mean
    a = float((s * d).sum())
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum())
    norm = float((s**2).sum())
    if norm <= 0:
        raise ValueError("landmarks: degenerate template")
    scale_cos, scale_sin = a / norm, b / norm
    matrix = np.array([[scale_cos, -scale_sin], [scale_sin, scale_cos]])
    shift = dst_mean - matrix @ src_mean
    return np.hstack([matrix, shift[:, None]])


def landmarks_from_box(face: Face) -> np.ndarray:
    """Five landmarks guessed from a box, for detectors that give none (template fitted to it)."""
    scale = np.array([face.width / 96.0, face.height / 112.0])
    return (TEMPLATE - np.array([8.0, 0.0])) * scale + np.array([face.x1, face.y1])


def _smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse(u: np.ndarray, v: np.ndarray, cx: float, cy: float, ax: float, ay: float,
             soft: float) -> np.ndarray:
    """Soft inside-ellipse weight: 1 inside, 0 outside, over ``soft`` canonical units."""
    r = np.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2)
    return 1.0 - _smoothstep(1.0 - soft / min(ax, ay), 1.0 + soft / min(ax, ay), r)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def push_pull_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of ``image`` (float H x W x C) smoothly from the known ones."""
    if known.all() or not known.any():
        return image if known.any() else np.full_like(image, 128.0)
    weight = known.astype(np.float64)[..., None]
    pyramid = [(image * weight, weight)]
    while min(pyramid[-1][1].shape[:2]) > 1 and pyramid[-1][1].min() == 0:
        values, w = pyramid[-1]
        h, wd = values.shape[:2]
        ph, pw = h % 2, wd % 2
        values = np.pad(values, ((0, ph), (0, pw), (0, 0)), mode="edge")
        w = np.pad(w, ((0, ph), (0, pw), (0, 0)), mode="edge")
        down_v = values.reshape(values.shape[0] // 2, 2, values.shape[1] // 2, 2, -1).sum((1, 3))
        down_w = w.reshape(w.shape[0] // 2, 2, w.shape[1] // 2, 2, -1).sum((1, 3))
        pyramid.append((down_v, down_w))
    values, w = pyramid[-1]
    filled = values / np.maximum(w, 1e-9)
    for values, w in reversed(pyramid[:-1]):
        up = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[: values.shape[0], : values.shape[1]]
        up = _box_blur(up, 1)
        alpha = np.clip(w, 0.0, 1.0)
        filled = np.where(alpha > 0, values / np.maximum(w, 1e-9), up) * alpha + up * (1 - alpha)
    return np.where(known[..., None], image, filled)


def _box_blur(array: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(array, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    out = np.zeros_like(array)
    size = 2 * radius + 1
    for dy in range(size):
        for dx in range(size):
            out += padded[dy: dy + array.shape[0], dx: dx + array.shape[1]]
    return out / (size * size)


@dataclass(frozen=True)
class SurroundStats:
    """What the default generator matches: exposure, colour cast, saturation, light, noise."""

    luma: float
    cast: tuple[float, float, float]
    saturation: float
    light_gradient: tuple[float, float]
    noise: float


def surround_stats(crop: np.ndarray, known: np.ndarray) -> SurroundStats:
    """Statistics of the pixels around the masked face (never of the face itself)."""
    if known.sum() < 16:
        return SurroundStats(128.0, (1.0, 1.0, 1.0), 0.3, (0.0, 0.0), 2.0)
    pixels = crop[known].astype(np.float64)
    luma = _luma(pixels)
    mean_luma = float(max(luma.mean(), 1.0))
    mean_rgb = pixels.mean(axis=0)
    cast = tuple(float(c) for c in np.clip(mean_rgb / max(mean_rgb.mean(), 1.0), 0.7, 1.3))
    saturation = float(np.mean(pixels.max(axis=1) - pixels.min(axis=1)) / mean_luma)
    ys, xs = np.nonzero(known)
    h, w = known.shape
    design = np.stack([np.ones_like(xs, dtype=np.float64), xs / max(w, 1) - 0.5, ys / max(h, 1) - 0.5], 1)
    coef, *_ = np.linalg.lstsq(design, luma, rcond=None)
    gradient = (float(coef[1] / mean_luma), float(coef[2] / mean_luma))
    full = crop.astype(np.float64)
    lum = _luma(full)
    high = lum - _box_blur(lum[..., None], 1)[..., 0]
    inner = known & np.roll(known, 1, 0) & np.roll(known, -1, 0) & np.roll(known, 1, 1) & np.roll(known, -1, 1)
    noise = float(np.percentile(np.abs(high[inner]), 25) * 1.4826) if inner.any() else 2.0
    return SurroundStats(mean_luma, cast, saturation, gradient, min(noise, 6.0))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The built-in parametric generator.

SKIN_TONES = ((242, 208, 186), (236, 200, 176), (224, 180, 150), (214, 170, 132), (205, 156, 124),
              (190, 140, 104), (176, 126, 94), (160, 110, 80), (141, 96, 68), (120, 82, 58),
              (104, 70, 50), (84, 56, 42))
HAIR_COLOURS = ((40, 30, 25), (70, 50, 35), (110, 80, 50), (25, 22, 22), (120, 100, 80),
                (160, 130, 90), (150, 70, 40), (185, 180, 175), (95, 90, 88))
IRIS_COLOURS = ((70, 45, 30), (50, 80, 110), (80, 95, 60), (90, 90, 95), (40, 30, 25))
FRAME_COLOURS = ((20, 20, 22), (60, 40, 30), (150, 150, 155), (110, 30, 30), (30, 40, 80))


@dataclass(frozen=True)
class FaceParams:
    """The parameters of one synthetic face, all drawn from the seed (canonical 112 x 112 units)."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    frame: tuple[float, float, float]
    face_width: float
    face_height: float
    jaw: float
    chin: float
    eye_size: float
    eye_aspect: float
    eye_tilt: float
    eye_spread: float
    eye_height: float
    lid: float
    brow_lift: float
    brow_thickness: float
    brow_arch: float
    brow_tilt: float
    brow_length: float
    nose_width: float
    nose_length: float
    nose_shade: float
    mouth_width: float
    mouth_shift: float
    lip_height: float
    lip_ratio: float
    smile: float
    teeth: float
    light_side: float
    contrast: float
    cheeks: float
    hairline: float
    fringe: float
    hair_volume: float
    hair_length: float
    beard: float
    moustache: float
    glasses: float
    lens_tint: float
    glasses_size: float


def _pick(rng: np.random.Generator, table: Sequence[tuple[int, int, int]], jitter: float) -> np.ndarray:
    colour = np.asarray(table[int(rng.integers(len(table)))], dtype=np.float64)
    return colour * rng.uniform(1.0 - jitter, 1.0 + jitter, 3)


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def random_face_params(rng: np.random.Generator) -> FaceParams:
    """Draw a face's parameters; nothing about the original face goes in."""
    skin = _pick(rng, SKIN_TONES, 0.06)
    lips = skin * np.array([0.85, 0.55, 0.58]) * rng.uniform(0.8, 1.05)
    hair, iris, frame = _pick(rng, HAIR_COLOURS, 0.08), _pick(rng, IRIS_COLOURS, 0.1), _pick(rng, FRAME_COLOURS, 0.1)
    u = rng.uniform
    glasses = float(u(0.0, 1.0) < 0.5)
    return FaceParams(
        skin=_rgb(skin), hair=_rgb(hair), iris=_rgb(iris), lips=_rgb(lips), frame=_rgb(frame),
        face_width=float(u(36.0, 48.0)), face_height=float(u(55.0, 66.0)), jaw=float(u(-0.1, 0.45)),
        chin=float(u(-4.0, 5.0)),
        eye_size=float(u(0.8, 1.2)), eye_aspect=float(u(0.7, 1.35)), eye_tilt=float(u(-0.15, 0.15)),
        eye_spread=float(u(-3.5, 3.5)), eye_height=float(u(-2.5, 2.5)), lid=float(u(0.2, 1.0)),
        brow_lift=float(u(-2.5, 3.0)), brow_thickness=float(u(1.4, 4.0)), brow_arch=float(u(0.0, 0.06)),
        brow_tilt=float(u(-0.2, 0.2)), brow_length=float(u(8.0, 12.5)),
        nose_width=float(u(0.75, 1.35)), nose_length=float(u(-3.0, 3.0)), nose_shade=float(u(0.06, 0.22)),
        mouth_width=float(u(0.8, 1.3)), mouth_shift=float(u(-3.0, 3.0)), lip_height=float(u(0.6, 1.4)),
        lip_ratio=float(u(0.6, 1.4)), smile=float(u(-2.0, 3.0)), teeth=float(u(0.0, 1.0) < 0.3),
        light_side=float(u(-0.45, 0.45)), contrast=float(u(1.0, 1.4)), cheeks=float(u(0.0, 0.25)),
        hairline=float(u(12.0, 32.0)), fringe=float(u(-1.0, 1.0)), hair_volume=float(u(0.0, 1.0)),
        hair_length=float(u(70.0, 130.0)),
        beard=float(rng.choice([0.0, 0.0, 0.0, u(0.3, 0.8)])),
        moustache=float(rng.choice([0.0, 0.0, u(0.4, 0.9)])),
        glasses=glasses, lens_tint=float(u(0.05, 0.3) if u(0.0, 1.0) < 0.7 else u(0.55, 0.85)) * glasses,
        glasses_size=float(u(0.9, 1.25)),
    )


def render_face(u: np.ndarray, v: np.ndarray, p: FaceParams) -> tuple[np.ndarray, np.ndarray]:
    """Colour (``... x 3``, 0-255) and alpha of the parametric face at canonical points (u, v)."""
    cx, cy = 56.0, 60.0
    # Face outline: an ellipse whose lower half narrows by ``jaw`` towards a chin ``chin`` lower.
    below = np.clip((v - cy) / p.face_height, 0.0, 1.2)
    half_width = p.face_width * (1.0 - p.jaw * below**2)
    height = np.where(v > cy, p.face_height + p.chin, p.face_height)
    rim = np.sqrt(((u - cx) / half_width) ** 2 + ((v - cy) / height) ** 2)
    face = 1.0 - _smoothstep(1.0 - 6.0 / p.face_width, 1.0 + 6.0 / p.face_width, rim)
    # Skin with soft shading: darker to the rim, a side light, a shadowed jaw line, cheeks.
    shade = 1.0 - 0.28 * p.contrast * _smoothstep(0.45, 1.05, rim) + p.light_side * (u - cx) / 110.0
    shade -= 0.10 * p.contrast * _ellipse(u, v, cx, 112.0 + p.chin, 30.0, 6.0, 6.0)
    colour = np.array(p.skin) * shade[..., None]
    hair = np.array(p.hair)

    def mix(weight: np.ndarray, rgb: np.ndarray | tuple[float, ...]) -> None:
        nonlocal colour
        colour = colour * (1.0 - weight[..., None]) + weight[..., None] * np.asarray(rgb, float)

    def darken(weight: np.ndarray, amount: float) -> None:
        nonlocal colour
        colour = colour * (1.0 - min(amount * p.contrast, 0.9) * weight[..., None])

    for side in (-1.0, 1.0):
        mix(0.8 * p.cheeks * _ellipse(u, v, cx + side * 22.0, 78.0, 9.0, 7.0, 6.0), (200.0, 90.0, 90.0))
    # Hair: over the forehead down to a (side-swept) hairline, and around the face to hair_length.
    hairline = p.hairline + p.fringe * 0.25 * (u - cx) + 0.004 * (u - cx) ** 2
    on_head = 1.0 - _smoothstep(hairline - 2.5, hairline + 2.5, v)
    mix(on_head * face, hair)
    outside = np.clip(1.0 - face, 0.0, 1.0)
    around = _ellipse(u, v, cx, cy - 4.0, p.face_width + 4.0 + 10.0 * p.hair_volume,
                      p.face_height + 8.0 + 6.0 * p.hair_volume, 5.0)
    hair_out = around * outside * (1.0 - _smoothstep(p.hair_length - 6.0, p.hair_length + 6.0, v))
    jaw_line = _smoothstep(78.0, 90.0, v) * _smoothstep(0.55, 0.8, rim)
    mix(np.clip(jaw_line + _smoothstep(96.0, 104.0, v), 0.0, 1.0) * p.beard * face, hair)
    for side, (ex, ey) in zip((-1.0, 1.0), TEMPLATE[:2], strict=True):
        ex, ey = ex + side * p.eye_spread, ey + p.eye_height
        s = p.eye_size
        ev = v - side * p.eye_tilt * (u - ex)  # outer corners up (tilt > 0) or down
        darken(_ellipse(u, ev, ex, ey - 1.0, 12.0 * s, 8.0 * s, 5.0), 0.22)  # eye socket
        eh = 3.4 * s * p.eye_aspect
        eye = _ellipse(u, ev, ex, ey, 7.5 * s, eh, 0.9)
        mix(eye, (235.0, 232.0, 228.0))
        iris_r = min(3.4 * s, eh + 0.6)
        mix(eye * _ellipse(u, v, ex, ey, iris_r, iris_r, 0.7), p.iris)
        mix(eye * _ellipse(u, v, ex, ey, 1.5 * s, 1.5 * s, 0.5), (12.0, 10.0, 10.0))
        lid = (_ellipse(u, ev, ex, ey - 0.6, 8.2 * s, eh + 0.7, 0.8)
               - _ellipse(u, ev, ex, ey + 0.4, 7.6 * s, eh + 0.2, 0.8))
        mix(np.clip(lid, 0, 1) * (ev < ey + 1.0) * p.lid, (35.0, 25.0, 22.0))
        brow_y = ey - 10.5 - p.brow_lift + p.brow_arch * (u - ex - side * 1.5) ** 2 - side * p.brow_tilt * (u - ex)
        brow = (1.0 - _smoothstep(p.brow_thickness * 0.5, p.brow_thickness * 0.5 + 1.0, np.abs(v - brow_y)))
        brow *= 1.0 - _smoothstep(p.brow_length - 2.0, p.brow_length, np.abs(u - ex - side * 1.0))
        mix(brow * 0.9, hair * 0.8)
    nx, ny = TEMPLATE[2]
    w = p.nose_width
    ny = ny + p.nose_length
    darken(_ellipse(u, v, nx - 5.0 * w, ny - 8.0, 2.5, 11.0 + p.nose_length, 3.0), p.nose_shade)  # side
    darken(_ellipse(u, v, nx, ny + 4.0, 9.0 * w, 3.5, 2.5), 0.12)  # under the nose
    for side in (-1.0, 1.0):
        darken(_ellipse(u, v, nx + side * 4.0 * w, ny + 1.5, 2.2 * w, 1.4, 0.8), 0.55)  # nostrils
    colour = colour + 18.0 * _ellipse(u, v, nx + 1.0, ny - 10.0, 2.0, 9.0, 2.5)[..., None]
    ml, mr = TEMPLATE[3], TEMPLATE[4]
    mx, my = (ml + mr) / 2.0
    my = my + p.mouth_shift
    half = (mr[0] - ml[0]) / 2.0 * p.mouth_width
    h = p.lip_height
    if p.moustache > 0:
        mix(p.moustache * _ellipse(u, v, mx, (ny + my) / 2.0 - 1.0, half * 0.9, 3.0, 1.5) * face, hair)
    # The mouth line bends: corners above its middle for a smile (smile > 0).
    line_y = my + p.smile * (1.0 - np.clip((u - mx) / half, -1.0, 1.0) ** 2)
    lv = v - (line_y - my)
    mix(_ellipse(u, lv, mx, my - 1.6 * h, half, 2.6 * h, 0.8), p.lips)
    mix(_ellipse(u, lv, mx, my + 2.2 * h * p.lip_ratio, half * 0.85, 3.4 * h * p.lip_ratio, 0.8),
        np.array(p.lips) * 1.08)
    if p.teeth > 0:
        mix(_ellipse(u, lv, mx, my + 0.3, half * 0.75, 1.5 * h, 0.6), (225.0, 222.0, 210.0))
    line = (1.0 - _smoothstep(0.3, 1.1, np.abs(lv - my))) * (1.0 - _smoothstep(half - 2.0, half + 0.5, np.abs(u - mx)))
    mix(line * (1.0 - 0.6 * p.teeth), (60.0, 30.0, 30.0))
    darken(_ellipse(u, v, mx, my + 9.5 * h * p.lip_ratio, 8.0, 2.2, 2.0), 0.12)  # under the lower lip
    if p.glasses > 0:
        g = p.glasses_size
        gy = TEMPLATE[0, 1] + p.eye_height
        frames = np.zeros_like(u)
        for side, ex in zip((-1.0, 1.0), TEMPLATE[:2, 0], strict=True):
            ex = ex + side * p.eye_spread
            lens = _ellipse(u, v, ex, gy, 11.0 * g, 8.0 * g, 0.8)
            darken(lens, p.lens_tint / max(p.contrast, 1e-3))
            frames = np.maximum(frames, lens - _ellipse(u, v, ex, gy, 11.0 * g - 1.6, 8.0 * g - 1.6, 0.8))
            temple = (1.0 - _smoothstep(0.6, 1.4, np.abs(v - gy + 3.0))) * (side * (u - ex) > 10.0 * g)
            frames = np.maximum(frames, temple * face)
        bridge_x = np.abs(u - cx) < (TEMPLATE[1, 0] - TEMPLATE[0, 0]) / 2.0 + p.eye_spread - 10.0 * g + 1.0
        frames = np.maximum(frames, (1.0 - _smoothstep(0.6, 1.4, np.abs(v - gy + 2.0))) * bridge_x)
        mix(np.clip(frames, 0.0, 1.0), p.frame)
    mix(hair_out, hair)
    return np.clip(colour, 0.0, 255.0), np.clip(face + hair_out, 0.0, 1.0)


def _match_surroundings(colour: np.ndarray, stats: SurroundStats, xs: np.ndarray, ys: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Exposure, colour cast, saturation, lighting gradient and grain of the surroundings."""
    luma = _luma(colour)
    exposure = float(np.clip((stats.luma / 140.0) ** 0.6, 0.45, 1.5))
    sat = float(np.clip(stats.saturation / 0.35, 0.0, 1.0))
    grey = luma[..., None]
    colour = grey + (colour - grey) * sat
    colour = colour * np.array(stats.cast) ** 0.5 * exposure
    light = 1.0 + np.clip(stats.light_gradient[0], -0.8, 0.8) * xs + np.clip(stats.light_gradient[1], -0.8, 0.8) * ys
    colour = colour * np.clip(light, 0.5, 1.5)[..., None]
    grain = rng.normal(0.0, stats.noise, size=colour.shape[:-1])[..., None]
    return np.clip(colour + grain, 0.0, 255.0)


class ParametricFaceGenerator:
    """The default generator: a seeded parametric face on the original's landmarks; no weights."""

    name = "parametric-v2"

    def generate(self, crop: np.ndarray, mask: np.ndarray, landmarks: np.ndarray,
                 seed: int) -> np.ndarray:
        """A replacement crop; see ``FaceGenerator``."""
        rng = np.random.default_rng(seed)
        known = ~mask
        base = push_pull_fill(crop.astype(np.float64), known)
        base = np.where(mask[..., None], _box_blur(base, 2), base)
        stats = surround_stats(crop, known)
        params = random_face_params(rng)
        to_image = similarity_transform(TEMPLATE, landmarks.astype(np.float64))
        inverse = np.linalg.inv(np.vstack([to_image, [0.0, 0.0, 1.0]]))[:2]
        ys, xs = np.nonzero(mask)
        u = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        v = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        colour, alpha = render_face(u, v, params)
        h, w = mask.shape
        colour = _match_surroundings(colour, stats, xs / max(w, 1) - 0.5, ys / max(h, 1) - 0.5, rng)
        out = base.copy()
        out[ys, xs] = base[ys, xs] * (1.0 - alpha[..., None]) + colour * alpha[..., None]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Model generators: TorchScript or ONNX, from a local path or an fsspec URL.


class ModelFaceGenerator:
    """A generator model following ``MODEL_CONTRACT`` at a fixed square input size."""

    def __init__(self, run: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], size: int,
                 name: str) -> None:
        if size < 16:
            raise ValueError(f"synthetic_generator_size must be >= 16, got {size}")
        self._run = run
        self.size = size
        self.name = name

    def check(self) -> None:
        """Run the model once on zeros; raise ``GeneratorError`` if it breaks the contract."""
        s = self.size
        try:
            out = self._run(np.zeros((1, 3, s, s), np.float32), np.ones((1, 1, s, s), np.float32),
                            np.full((1, 5, 2), 0.5, np.float32))
        except Exception as error:  # noqa: BLE001 - any failure of a user model is a config error
            raise GeneratorError(
                f"synthetic_generator: {self.name} failed on an input of the contract "
                f"({MODEL_CONTRACT}): {type(error).__name__}: {error}") from None
        shape = tuple(np.shape(out))
        if shape != (1, 3, s, s):
            raise GeneratorError(
                f"synthetic_generator: {self.name} returned shape {shape}, expected (1, 3, {s}, {s}) "
                f"({MODEL_CONTRACT})")

    def generate(self, crop: np.ndarray, mask: np.ndarray, landmarks: np.ndarray,
                 seed: int) -> np.ndarray:
        """A replacement crop; see ``FaceGenerator``."""
        h, w = mask.shape
        s = self.size
        image = np.asarray(Image.fromarray(crop).resize((s, s), Image.Resampling.BILINEAR), np.float32)
        small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((s, s)), np.float32) > 0
        image = (image / 127.5 - 1.0) * (~small_mask)[..., None]
        marks = (landmarks / np.array([w, h], np.float64)).astype(np.float32)
        out = np.asarray(self._run(image.transpose(2, 0, 1)[None].astype(np.float32),
                                   small_mask[None, None].astype(np.float32), marks[None]), np.float32)
        if out.shape != (1, 3, s, s) or not np.isfinite(out).all():
            raise GeneratorError(f"synthetic_generator: {self.name} returned {out.shape} or non-finite values")
        rgb = np.clip((out[0].transpose(1, 2, 0) + 1.0) * 127.5, 0, 255).astype(np.uint8)
        return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC))


def _read_bytes(uri: str, storage: Storage) -> bytes:
    fs, path = storage.filesystem(uri)
    try:
        return bytes(fs.cat_file(path))
    except (OSError, FileNotFoundError) as error:
        raise GeneratorError(f"synthetic_generator: cannot read {uri!r}: {error}") from None


def _torchscript_runner(data: bytes, uri: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    import torch

    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except Exception as error:  # noqa: BLE001 - torch raises several types for a bad file
        raise GeneratorError(f"synthetic_generator: {uri!r} is not a TorchScript file: {error}") from None

    def run(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(image), torch.from_numpy(mask), torch.from_numpy(landmarks))
        return np.asarray(out.detach().cpu().numpy())

    return run


def _onnx_runner(data: bytes, uri: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    try:
        import onnxruntime
    except ImportError:
        raise GeneratorError(
            "synthetic_generator: ONNX models need onnxruntime (pip install 'dataset-anonymizer[onnx]')"
        ) from None
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        raise GeneratorError(f"synthetic_generator: {uri!r} is not a loadable ONNX model: {error}") from None
    names = [i.name for i in session.get_inputs()]
    # Inputs by name (exporters drop unused ones, e.g. landmarks), or three inputs by position.
    by_name = set(names) <= {"image", "mask", "landmarks"} and {"image", "mask"} <= set(names)
    if not by_name and len(names) != 3:
        raise GeneratorError(f"synthetic_generator: {uri!r} has inputs {names}, expected image, mask, landmarks")

    def run(image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        values = {"image": image, "mask": mask, "landmarks": landmarks}
        feed = {n: values[n] for n in names} if by_name else dict(zip(names, (image, mask, landmarks), strict=True))
        return np.asarray(session.run(None, feed)[0])

    return run


def load_generator(uri: str = "", size: int = 128, storage: Storage = DEFAULT_STORAGE) -> FaceGenerator:
    """The generator at ``uri`` (``.onnx``: ONNX, otherwise TorchScript), or the built-in one.

    Raises:
        GeneratorError: the file cannot be read or loaded, or breaks ``MODEL_CONTRACT``.
    """
    if not uri:
        return ParametricFaceGenerator()
    data = _read_bytes(uri, storage)
    digest = hashlib.sha256(data).hexdigest()[:12]
    if uri.lower().endswith(".onnx"):
        generator = ModelFaceGenerator(_onnx_runner(data, uri), size, f"onnx:{digest}")
    else:
        generator = ModelFaceGenerator(_torchscript_runner(data, uri), size, f"torchscript:{digest}")
    generator.check()
    return generator


# ---------------------------------------------------------------------------------------------
# Pasting generated faces into an image.


def face_seed(seed: int, key: str, index: int) -> int:
    """A per-face seed from the job seed, the record's id and the face's index (not its pixels)."""
    digest = hashlib.sha256(f"{seed}:{key}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


BLENDS = ("feather", "poisson")


def poisson_blend(generated: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Poisson image editing (Perez et al. 2003) of ``generated`` into ``original`` over ``mask``
    (H x W x 3 uint8 crops, H x W bool): inside the mask the output keeps the generated gradients,
    and across the mask's edge it meets the original's pixels just outside (guidance 0 there), so
    the face takes the light and colour of its surroundings with no seam. Only original pixels
    outside the mask enter the solve. Returns the H x W x 3 uint8 crop (outside the mask: ``original``)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import spsolve

    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    count = len(ys)
    out = original.copy()
    if count == 0:
        return out
    index = np.full(mask.shape, -1, np.int64)
    index[ys, xs] = np.arange(count)
    g, o = generated.astype(np.float64), original.astype(np.float64)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, 3))
    rows, cols = [], []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)  # beyond the crop: no constraint
        p, vy, vx = np.nonzero(valid)[0], ny[valid], nx[valid]
        diagonal[p] += 1.0
        within = mask[vy, vx]
        rows.append(p[within])
        cols.append(index[vy[within], vx[within]])
        rhs[p[within]] += g[ys[p[within]], xs[p[within]]] - g[vy[within], vx[within]]
        rhs[p[~within]] += o[vy[~within], vx[~within]]
    if not (diagonal > 0).all() or len(np.concatenate(rows)) == 4 * count:
        out[ys, xs] = generated[ys, xs]  # no pixel of the original touches the mask: nothing to meet
        return out
    r, c = np.concatenate(rows), np.concatenate(cols)
    matrix = csr_matrix((np.concatenate([diagonal, -np.ones(len(r))]),
                         (np.concatenate([np.arange(count), r]), np.concatenate([np.arange(count), c]))),
                        shape=(count, count))
    solved = np.asarray(spsolve(matrix.tocsc(), rhs)).reshape(count, 3)
    if not np.isfinite(solved).all():
        out[ys, xs] = generated[ys, xs]
        return out
    out[ys, xs] = np.clip(np.rint(solved), 0, 255).astype(np.uint8)
    return out


def synthesize_face(image: np.ndarray, face: Face, hard_mask: Image.Image, region: tuple[int, int, int, int],
                    generator: FaceGenerator, seed: int, feather: float, soften: float = 0.0,
                    blend: str = "feather", match: str = "none") -> np.ndarray:
    """Replace one face in ``image`` (H x W x 3 uint8, changed in place and returned).

    ``hard_mask`` (``L``, the size of ``region``) marks the pixels to replace (any value > 0).
    Inside it the output is the generator's, with no weight on the original. ``blend``: ``feather``,
    a band of ``feather`` px outside it blended from the generator's output into the original;
    ``poisson``, the generator's output Poisson-blended into the mask (``poisson_blend``), nothing
    outside it changed. ``soften`` > 0 blurs the generator's output (sigma = soften x face diagonal)
    before it is used: the generated pixels only, so the original still has no weight inside the mask.
    ``match`` (``photo_match.MATCHES``) then matches the generated face's edge blur and/or noise to
    those of a ring of original pixels around the region (a quarter of the face's side wide, the
    mask's pixels never read): ``photo_match.match_photo``.
    """
    height, width = image.shape[:2]
    pad = int(np.ceil(feather)) + 1
    rx1, ry1, rx2, ry2 = region
    cx1, cy1, cx2, cy2 = max(0, rx1 - pad), max(0, ry1 - pad), min(width, rx2 + pad), min(height, ry2 + pad)
    mask = np.zeros((cy2 - cy1, cx2 - cx1), bool)
    mask[ry1 - cy1: ry2 - cy1, rx1 - cx1: rx2 - cx1] = np.asarray(hard_mask) > 0
    if not mask.any():
        return image
    original = image[cy1:cy2, cx1:cx2].copy()
    crop = np.where(mask[..., None], 0, original).astype(np.uint8)
    marks = np.asarray(face.landmarks, np.float64) if len(face.landmarks) == 5 else landmarks_from_box(face)
    marks = marks - np.array([cx1, cy1], np.float64)
    generated = np.asarray(generator.generate(crop, mask.copy(), marks, seed))
    if generated.shape != crop.shape or generated.dtype != np.uint8:
        raise GeneratorError(f"synthetic_generator: {generator.name} returned {generated.shape} "
                             f"{generated.dtype}, expected {crop.shape} uint8")
    if soften > 0:
        generated = np.asarray(Image.fromarray(generated).filter(ImageFilter.GaussianBlur(soften * face.diagonal)))
    if match != "none":
        ring = max(4, round(0.25 * max(face.width, face.height)))
        wx1, wy1, wx2, wy2 = max(0, cx1 - ring), max(0, cy1 - ring), min(width, cx2 + ring), min(height, cy2 + ring)
        known = ring_mask((wy2 - wy1, wx2 - wx1), (cx1 - wx1, cy1 - wy1, cx2 - wx1, cy2 - wy1), mask)
        generated = match_photo(generated, mask, image[wy1:wy2, wx1:wx2], known, match, seed)
    if blend == "poisson":
        image[cy1:cy2, cx1:cx2] = np.where(mask[..., None], poisson_blend(generated, original, mask), original)
        return image
    # Outside the mask: a weight falling from 1 at the mask's edge to 0 at ``feather`` px.
    mask_image = Image.fromarray(mask.astype(np.uint8) * 255)
    grown = np.asarray(mask_image.filter(ImageFilter.MaxFilter(2 * pad + 1)).filter(
        ImageFilter.GaussianBlur(max(0.5, feather / 2))), np.float64) / 255.0
    weight = np.clip(grown, 0.0, 1.0)[..., None]
    blended = np.rint(generated * weight + original * (1.0 - weight)).astype(np.uint8)
    image[cy1:cy2, cx1:cx2] = np.where(mask[..., None], generated, blended)
    return image


def ellipse_mask(size: tuple[int, int], face_box: tuple[int, int, int, int]) -> Image.Image:
    """A hard ``L`` mask: the ellipse inscribed in ``size`` plus the face box (relative coords)."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, size[0] - 1, size[1] - 1), fill=255)
    fx1, fy1, fx2, fy2 = face_box
    ImageDraw.Draw(mask).rectangle((fx1, fy1, fx2 - 1, fy2 - 1), fill=255)
    return mask


def synthesize_in_place(rgb: np.ndarray, face: Face, region: tuple[int, int, int, int],
                        face_box: tuple[int, int, int, int], generator: FaceGenerator, seed: int,
                        soften: float = 0.0, blend: str = "feather",
                        match: str = "none") -> tuple[int, int, int, int] | None:
    """Replace one face of ``rgb`` (H x W x 3 uint8, changed in place) as ``synthesize_faces`` does.

    Returns the window ``(x1, y1, x2, y2)`` of pixels that may have changed (the region and its
    feathered band), or None when the region is empty.
    """
    rx1, ry1, rx2, ry2 = region
    if rx2 <= rx1 or ry2 <= ry1:
        return None
    relative_box = (face_box[0] - rx1, face_box[1] - ry1, face_box[2] - rx1, face_box[3] - ry1)
    hard = ellipse_mask((rx2 - rx1, ry2 - ry1), relative_box)
    feather = max(2.0, 0.05 * face.diagonal)
    synthesize_face(rgb, face, hard, region, generator, seed, feather, soften, blend, match)
    pad = int(np.ceil(feather)) + 1
    height, width = rgb.shape[:2]
    return max(0, rx1 - pad), max(0, ry1 - pad), min(width, rx2 + pad), min(height, ry2 + pad)


def synthesize_faces(image: Image.Image, faces: Sequence[Face], regions: Sequence[tuple[int, int, int, int]],
                     face_boxes: Sequence[tuple[int, int, int, int]], generator: FaceGenerator,
                     seeds: Sequence[int], soften: float = 0.0, blend: str = "feather",
                     match: str = "none") -> Image.Image:
    """Return a copy of ``image`` with each face replaced by a generated one.

    ``regions`` are the grown boxes to replace and ``face_boxes`` the detected boxes (both in whole
    image pixels); ``seeds`` one per face; ``soften``, ``blend`` and ``match`` as in ``synthesize_face``.
    """
    mode = image.mode
    rgb = np.array(image.convert("RGB"))
    for face, region, box, seed in zip(faces, regions, face_boxes, seeds, strict=True):
        synthesize_in_place(rgb, face, region, box, generator, seed, soften, blend, match)
    result = Image.fromarray(rgb)
    if mode == "RGBA":
        result.putalpha(image.getchannel("A"))
    elif mode != "RGB":
        result = result.convert(mode)
    return result
