"""Replace faces: size-adaptive Gaussian blur (default), solid mask, pixelation (low security), or
synthetic faces (transforms/synthesis.py); the policy, the replaced regions, and the stronger
replacements of escalation. Pure functions on images: the Beam stage is ``replace_stage.py``.

Every face's detected box is always fully replaced; the margin around it (hair, ears) is an
ellipse feathered at its outer edge only, so no seam shows and no original face pixel remains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from transforms.identity import MATCH_THRESHOLD, IdentityEmbedder, Reference
from transforms.photo_match import MATCHES
from transforms.records import LOW_SECURITY_METHODS, REPLACEMENT_METHODS, TEXT, Face
from transforms.synthesis import (
    BLENDS,
    FaceGenerator,
    face_seed,
    load_generator,
    synthesize_faces,
    synthesize_in_place,
)

Box = tuple[int, int, int, int]
UNMEASURABLE = "unmeasurable"


@dataclass(frozen=True)
class ReplacementPolicy:
    """How faces are replaced; validated on construction."""

    method: str = "gaussian"
    box_margin: float = 0.2
    blur_sigma_factor: float = 0.2
    solid_color: tuple[int, int, int] = (128, 128, 128)
    pixelate_blocks: int = 8
    score_threshold: float = 0.7
    # Detectors that apply their own threshold (the extra detectors): every face they found is replaced.
    self_thresholded_detectors: tuple[str, ...] = ()
    synthetic_generator: str = ""
    synthetic_generator_size: int = 128
    synthetic_seed: int = 0
    synthetic_attempts: int = 12
    synthetic_soften: float = 0.0
    synthetic_target_distance: float = 0.8
    # Faces smaller than this (shorter side, px) are blurred under method synthetic: too small to
    # identify or to learn from, and a substitute that small cannot be told from its original.
    synthetic_min_face_size: int = 20
    # A detection gets a synthetic face only when it is confident: at least this score, and found
    # by two detectors or with landmarks laid out as a face's (``plausible_face``); else it is blurred.
    synthetic_min_score: float = 0.9
    # How a substitute meets its surroundings: ``feather`` (an alpha band) or ``poisson`` (seamless).
    synthetic_blend: str = "feather"
    # What of the photo around a substitute it is matched to (``photo_match.MATCHES``): its edge
    # blur (``sharpness``) and/or its noise, estimated on a ring of original pixels around it.
    synthetic_match: str = "none"

    def __post_init__(self) -> None:
        if self.method not in REPLACEMENT_METHODS:
            raise ValueError(f"method must be one of {REPLACEMENT_METHODS}, got {self.method!r}")
        if self.box_margin < 0.1:
            raise ValueError(f"box_margin must be >= 0.1 (ImageNet recipe), got {self.box_margin}")
        if self.blur_sigma_factor < 0.1:
            raise ValueError(
                f"blur_sigma_factor must be >= 0.1 (ImageNet recipe), got {self.blur_sigma_factor}")
        if self.pixelate_blocks < 2:
            raise ValueError(f"pixelate_blocks must be >= 2, got {self.pixelate_blocks}")
        if self.synthetic_generator_size < 16:
            raise ValueError(f"synthetic_generator_size must be >= 16, got {self.synthetic_generator_size}")
        if self.synthetic_seed < 0:
            raise ValueError(f"synthetic_seed must be >= 0, got {self.synthetic_seed}")
        if self.synthetic_attempts < 1:
            raise ValueError(f"synthetic_attempts must be >= 1, got {self.synthetic_attempts}")
        if not 0.0 <= self.synthetic_soften <= 0.05:
            raise ValueError(f"synthetic_soften must be in [0, 0.05], got {self.synthetic_soften}")
        if self.synthetic_min_face_size < 0:
            raise ValueError(f"synthetic_min_face_size must be >= 0, got {self.synthetic_min_face_size}")
        if self.synthetic_target_distance < MATCH_THRESHOLD:
            raise ValueError(f"synthetic_target_distance must be >= {MATCH_THRESHOLD}, "
                             f"got {self.synthetic_target_distance}")
        if self.synthetic_match not in MATCHES:
            raise ValueError(f"synthetic_match must be one of {MATCHES}, got {self.synthetic_match!r}")
        if self.synthetic_blend not in BLENDS:
            raise ValueError(f"synthetic_blend must be one of {BLENDS}, got {self.synthetic_blend!r}")
        if not 0.0 <= self.synthetic_min_score <= 1.0:
            raise ValueError(f"synthetic_min_score must be in [0, 1], got {self.synthetic_min_score}")

    def replaces(self, face: Face) -> bool:
        """Whether ``face`` is replaced: its score reaches ``score_threshold``, or a self-thresholded
        detector found it."""
        return face.score >= self.score_threshold or any(
            name in self.self_thresholded_detectors for name in face.detector.split("+"))

    def synthesizes(self, face: Face, measurable: bool = True) -> bool:
        """Whether method ``synthetic`` substitutes ``face`` (else it is blurred: ``face_method``);
        ``measurable``: whether its identity can be measured (``identity_evidence.screen_faces``)."""
        return self.method == "synthetic" and not self.blur_reason(face, measurable)

    def blur_reason(self, face: Face, measurable: bool = True) -> str:
        """Why method ``synthetic`` blurs ``face`` instead: ``text`` (a text region), ``small``,
        ``low_confidence``, ``unmeasurable`` (its identity cannot be measured, so a re-detected
        substitute could never be proven new: ``verification.leaked_faces``), or ""."""
        if face.kind == TEXT:
            return TEXT
        if face.short_side < self.synthetic_min_face_size:
            return "small"
        if face.score < self.synthetic_min_score or not ("+" in face.detector or plausible_face(face)):
            return "low_confidence"
        if not measurable:
            return UNMEASURABLE
        return ""

    def face_method(self, face: Face, escalation: int = 0, measurable: bool = True) -> tuple[str, str]:
        """The method that replaced ``face`` (after ``escalation``; ``measurable`` as in
        ``synthesizes``) and why it is not the policy's (``small``, ``low_confidence``,
        ``unmeasurable``, ``escalated``; "" when it is)."""
        if escalation:
            return ("solid" if escalation == ESCALATION_LEVELS[-1] else "gaussian"), "escalated"
        if self.method == "synthetic" and (reason := self.blur_reason(face, measurable)):
            return "gaussian", reason
        if self.method == "pixelate" and face.kind == TEXT:
            return "gaussian", TEXT  # a mosaic of text is read back by OCR models
        return self.method, ""

    @property
    def security_level(self) -> str:
        return "low" if self.method in LOW_SECURITY_METHODS else "high"


def plausible_face(face: Face) -> bool:
    """Whether ``face``'s five landmarks (left eye, right eye, nose, left and right mouth corner) lie
    as a face's do in its box: inside it, eyes left to right and above the mouth, the nose between
    them, and an eye distance of 20-70% of the box width. False without landmarks."""
    if len(face.landmarks) != 5 or face.width <= 0 or face.height <= 0:
        return False
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    slack_x, slack_y = 0.1 * face.width, 0.1 * face.height
    inside = all(face.x1 - slack_x <= x <= face.x2 + slack_x and face.y1 - slack_y <= y <= face.y2 + slack_y
                 for x, y in face.landmarks)
    eyes = max(ly, ry)
    return (inside and lx < rx and mlx < mrx and 0.2 <= (rx - lx) / face.width <= 0.7
            and eyes < min(mly, mry) and min(ly, ry) <= ny <= max(mly, mry))


def one_box_per_face(faces: Sequence[Face], overlap: float = 0.6) -> tuple[Face, ...]:
    """Detections of one face merged, so that no face is replaced twice: a detection lying mostly
    inside a more confident one (intersection over the smaller box >= ``overlap``; two detectors'
    boxes of one face often overlap too little for their IoU union) is merged into it: the union of
    both boxes (every pixel either covered stays covered), the higher score and landmarks, both
    detectors' names. A text region and a face are never merged: each keeps its kind's treatment."""
    kept: list[Face] = []
    order: list[int] = []
    for position, face in sorted(enumerate(faces), key=lambda item: -item[1].score):
        for index, other in enumerate(kept):
            if other.kind != face.kind:
                continue
            iw = min(face.x2, other.x2) - max(face.x1, other.x1)
            ih = min(face.y2, other.y2) - max(face.y1, other.y1)
            if iw <= 0 or ih <= 0:
                continue
            smaller = min(face.width * face.height, other.width * other.height)
            if smaller > 0 and iw * ih / smaller >= overlap:
                names = "+".join(dict.fromkeys(other.detector.split("+") + face.detector.split("+")))
                kept[index] = Face(min(face.x1, other.x1), min(face.y1, other.y1), max(face.x2, other.x2),
                                   max(face.y2, other.y2), other.score, names, other.landmarks)
                break
        else:
            kept.append(face)
            order.append(position)
    return tuple(face for _, face in sorted(zip(order, kept, strict=True), key=lambda item: item[0]))


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return (max(0, int(x1)), max(0, int(y1)), min(width, int(x2 + 0.999)),
            min(height, int(y2 + 0.999)))


def face_box(face: Face, width: int, height: int) -> Box:
    """The detected box in whole pixels, rounded outwards and clipped to the image."""
    return _clip((face.x1, face.y1, face.x2, face.y2), width, height)


def grown_box(face: Face, margin: float, width: int, height: int) -> Box:
    """The face box grown on every side by ``margin`` x its diagonal, clipped to the image."""
    grow = margin * face.diagonal
    return _clip((face.x1 - grow, face.y1 - grow, face.x2 + grow, face.y2 + grow), width, height)


def region_mask(face: Face, region: Box, width: int, height: int) -> Image.Image:
    """An ``L`` mask over ``region``: a feathered ellipse, with the face box itself at 255."""
    rx1, ry1, rx2, ry2 = region
    size = (rx2 - rx1, ry2 - ry1)
    mask = Image.new("L", size, 0)
    feather = max(1.0, 0.04 * face.diagonal)
    inset = int(feather)
    ImageDraw.Draw(mask).ellipse(
        (inset, inset, max(inset, size[0] - 1 - inset), max(inset, size[1] - 1 - inset)), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    fx1, fy1, fx2, fy2 = face_box(face, width, height)
    ImageDraw.Draw(mask).rectangle((fx1 - rx1, fy1 - ry1, fx2 - rx1 - 1, fy2 - ry1 - 1), fill=255)
    return mask


def _blurred_region(image: Image.Image, region: Box, sigma: float) -> Image.Image:
    width, height = image.size
    pad = int(3 * sigma) + 1
    x1, y1, x2, y2 = region
    context = (max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad))
    blurred = image.crop(context).filter(ImageFilter.GaussianBlur(sigma))
    # A second pass removes what a single box-approximated pass leaves of fine structure.
    blurred = blurred.filter(ImageFilter.GaussianBlur(sigma))
    return blurred.crop((x1 - context[0], y1 - context[1], x2 - context[0], y2 - context[1]))


def _pixelated_region(image: Image.Image, region: Box, face: Face, blocks: int) -> Image.Image:
    crop = image.crop(region)
    block = max(2, int(face.short_side / blocks))
    small = crop.resize((max(1, crop.width // block), max(1, crop.height // block)),
                        Image.Resampling.BOX)
    return small.resize(crop.size, Image.Resampling.NEAREST)


def replace_faces(image: Image.Image, faces: Sequence[Face],
                  policy: ReplacementPolicy, generator: FaceGenerator | None = None,
                  seeds: Sequence[int] | None = None, measurable: Sequence[bool] | None = None) -> Image.Image:
    """Return a copy of ``image`` with every face replaced under ``policy`` (under ``synthetic``,
    faces it does not substitute, ``ReplacementPolicy.synthesizes``, are blurred as under ``gaussian``).

    Args:
        image: an upright RGB or RGBA image.
        faces: the faces to replace, in the image's pixel coordinates.
        policy: the method and its strength.
        generator: the face generator of method ``synthetic`` (default: the policy's).
        seeds: one seed per face for method ``synthetic`` (default: from the policy's seed).
        measurable: per face, whether its identity can be measured (default: every face).
    """
    result = image.copy()
    if not faces:
        return result
    width, height = image.size
    if policy.method == "synthetic":
        if generator is None:
            generator = load_generator(policy.synthetic_generator, policy.synthetic_generator_size)
        if seeds is None:
            seeds = [face_seed(policy.synthetic_seed, "", i) for i in range(len(faces))]
        if measurable is None:
            measurable = [True] * len(faces)
        chosen = [i for i, face in enumerate(faces) if policy.synthesizes(face, measurable[i])]
        regions = [grown_box(faces[i], policy.box_margin, width, height) for i in chosen]
        boxes = [face_box(faces[i], width, height) for i in chosen]
        result = synthesize_faces(result, [faces[i] for i in chosen], regions, boxes, generator,
                                  [seeds[i] for i in chosen], policy.synthetic_soften, policy.synthetic_blend,
                                  policy.synthetic_match)
        blurred = [face for i, face in enumerate(faces) if i not in chosen]
        return replace_faces(result, blurred, dataclasses.replace(policy, method="gaussian")) if blurred else result
    sigma = policy.blur_sigma_factor * max(face.diagonal for face in faces)
    for face in faces:
        region = grown_box(face, policy.box_margin, width, height)
        if region[2] <= region[0] or region[3] <= region[1]:
            continue
        mask = region_mask(face, region, width, height)
        # Each patch is cut from the image as replaced so far: where faces overlap, the later one
        # blurs the earlier one's blur again (stronger, never weaker).
        if policy.method == "gaussian" or (policy.method == "pixelate" and face.kind == TEXT):
            patch = _blurred_region(result, region, max(1.0, sigma))
        elif policy.method == "solid":
            patch = Image.new(result.mode, mask.size, policy.solid_color + (255,) * (
                len(result.mode) - 3))
        else:
            patch = _pixelated_region(result, region, face, policy.pixelate_blocks)
            mask = Image.new("L", mask.size, 255)
        result.paste(patch, region[:2], mask)
    return result


ESCALATION_LEVELS = (1, 2)


def escalated_policy(policy: ReplacementPolicy, level: int) -> ReplacementPolicy:
    """The replacement of a face that still matched its original: level 1 blurs it with twice the
    margin and twice the sigma, level 2 fills twice the margin with the solid colour."""
    if level not in ESCALATION_LEVELS:
        raise ValueError(f"escalation level must be one of {ESCALATION_LEVELS}, got {level}")
    return dataclasses.replace(policy, method="gaussian" if level == 1 else "solid",
                               box_margin=2 * policy.box_margin, blur_sigma_factor=2 * policy.blur_sigma_factor)


def attempt_seed(policy: ReplacementPolicy, key: str, index: int, attempt: int) -> int:
    """The seed of face ``index``'s ``attempt``-th synthetic substitute (attempt 0: ``replace_faces``'s)."""
    return face_seed(policy.synthetic_seed, f"{key}#{attempt}" if attempt else key, index)


def choose_synthetic_attempts(original: np.ndarray, faces: Sequence[Face], references: Mapping[int, Reference],
                              policy: ReplacementPolicy, generator: FaceGenerator, embedder: IdentityEmbedder,
                              key: str) -> list[int]:
    """Per face, the attempt (``attempt_seed``) whose substitute is farthest from the original.

    Only faces with a reference (``references``, by face index: the measurable ones) are searched;
    the others keep attempt 0. Each face's candidates are pasted alone into ``original`` (H x W x 3
    uint8 RGB, left unchanged) and scored by identity distance only: a candidate's same-alignment
    distance (one embedding) is an upper bound of its distance, so only a candidate whose bound beats
    the best distance so far is measured fully. A face stops at the first candidate farther than
    ``synthetic_target_distance``, or after ``synthetic_attempts``. The original's pixels never reach
    a candidate's masked region.
    """
    height, width = original.shape[:2]
    work = original.copy()
    chosen = []
    for index, face in enumerate(faces):
        reference = references.get(index)
        region, box = grown_box(face, policy.box_margin, width, height), face_box(face, width, height)
        best, best_attempt = -1.0, 0
        searched = policy.synthetic_attempts if reference is not None and policy.synthesizes(face) else 0
        for attempt in range(searched):
            assert reference is not None
            window = synthesize_in_place(work, face, region, box, generator,
                                         attempt_seed(policy, key, index, attempt), policy.synthetic_soften,
                                         policy.synthetic_blend, policy.synthetic_match)
            if window is None:
                break
            bound = embedder.same_alignment_distance(reference, work)
            if bound > best:
                distance = min(bound, embedder.own_alignment_distance(reference, work))
                if distance > best:
                    best, best_attempt = distance, attempt
            x1, y1, x2, y2 = window
            work[y1:y2, x1:x2] = original[y1:y2, x1:x2]
            if best > policy.synthetic_target_distance:
                break
        chosen.append(best_attempt)
    return chosen
