"""Text regions (licence plates, name badges, signs): PaddleOCR's PP-OCRv4 text detector.

The model file is ``ch_PP-OCRv4_det_infer.onnx`` from the ``rapidocr-onnxruntime`` 1.4.4 wheel
(Apache-2.0, PaddleOCR's PP-OCRv4 mobile detector, about 4.7 MB). Only that file is used, checked
against its SHA-256: the package is installed without its dependencies (it requires
``opencv-python``, which clashes with the headless wheel; the Makefile does it) and none of its OCR
stack is imported. The model runs here on onnxruntime and its probability map is post-processed as
DB (Differentiable Binarization) does: threshold, dilate, contours, a rotated rectangle per
contour scored by its mean probability, grown ("unclipped") by area x ratio / perimeter.

Regions are reported as ``Face`` objects whose ``detector`` is ``text`` (``Face.kind``), so the
replacement, verification and manifest stages treat them as they treat faces, with their kind
recorded. ``TextAndFacesDetector`` runs a face detector and this one on the same batch and keeps
both lists unmerged: a text box never absorbs a face box or the reverse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from transforms.detection.base import Detector, DetectorFactory
from transforms.detection.centerface import onnx_session
from transforms.observability import timed
from transforms.records import TEXT, UNREAD_TEXT, Face

if TYPE_CHECKING:
    from transforms.detection.text_reading import TextReader

MODEL_FILE = "ch_PP-OCRv4_det_infer.onnx"
MODEL_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
PACKAGE = "rapidocr_onnxruntime"
NOT_INSTALLED = ("redact: text needs PP-OCRv4's text-detection model from rapidocr-onnxruntime and onnxruntime "
                 "(pip install --no-deps rapidocr-onnxruntime==1.4.4 and 'dataset-anonymizer[onnx]'; "
                 "`make install` does both)")


def wheel_model_path(name: str) -> Path | None:
    """The model file ``name`` of the installed ``rapidocr-onnxruntime`` wheel, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    return path if path.is_file() else None


def text_model_path() -> Path | None:
    """The detection model of the installed ``rapidocr-onnxruntime`` wheel."""
    return wheel_model_path(MODEL_FILE)


def text_available() -> bool:
    """Whether the model file and onnxruntime are installed."""
    return text_model_path() is not None and importlib.util.find_spec("onnxruntime") is not None


def _checked_model(path: Path, expected: str = MODEL_SHA256) -> bytes:
    """The model's bytes, after checking them against ``expected`` (``MODEL_SHA256``).

    Raises:
        RuntimeError: the file is not the one this module was measured with.
    """
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise RuntimeError(f"{path}: SHA-256 {digest}, expected {expected} (rapidocr-onnxruntime 1.4.4)")
    return data


def text_info() -> dict[str, str]:
    """Name, version and model hash, for the manifest."""
    path = text_model_path()
    if path is None:
        raise RuntimeError(NOT_INSTALLED)
    _checked_model(path)
    return {"name": TEXT, "version": "PP-OCRv4 det (rapidocr-onnxruntime "
            + importlib.metadata.version("rapidocr-onnxruntime") + ")", "weights_sha256": MODEL_SHA256}


@dataclass(frozen=True)
class TextSettings:
    """Settings of the text detector; validated on construction.

    ``threshold``: the probability a pixel needs to be text (DB's 0.3); ``box_threshold``: the mean
    probability a region needs (DB's 0.5; every region kept is replaced); ``unclip_ratio``: how far
    a region grows past its shrunk core (DB's 1.6); ``min_height``: regions whose text is shorter
    (the rotated box's short side, px of the original image) are left untouched (0: none is).
    ``min_aspect``: a region's long side over its short side must reach it. Lines of text are
    long; the model's blobs on faces, eyes and silhouettes are not (1.0-1.55 on the sample photos),
    and neither is a lone character or a two-digit number, which this therefore misses.
    The image is scaled so that its shorter side is at least ``min_side`` (small text resolves
    better; PaddleOCR's 736) and its longer side at most ``max_side``, each side a multiple of 32.
    ``read`` (the verify stage's detector): each region is also read by the recognizer
    (``text_reading.py``), and one that cannot be read is reported as ``UNREAD_TEXT``, which
    counts at no verification threshold.
    """

    threshold: float = 0.3
    box_threshold: float = 0.5
    unclip_ratio: float = 1.6
    min_height: int = 0
    min_aspect: float = 1.6
    min_side: int = 736
    max_side: int = 2048
    threads: int = 1
    device: str = "auto"
    read: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"text_threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 < self.box_threshold < 1.0:
            raise ValueError(f"text_box_threshold must be in (0, 1), got {self.box_threshold}")
        if not 1.0 <= self.unclip_ratio <= 4.0:
            raise ValueError(f"text_unclip_ratio must be in [1, 4], got {self.unclip_ratio}")
        if self.min_aspect < 1.0:
            raise ValueError(f"text min_aspect must be >= 1, got {self.min_aspect}")
        if self.min_height < 0:
            raise ValueError(f"text_min_height must be >= 0, got {self.min_height}")
        if not 32 <= self.min_side <= self.max_side:
            raise ValueError(f"text min_side must be in [32, max_side], got {self.min_side}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def input_size(width: int, height: int, min_side: int, max_side: int) -> tuple[int, int]:
    """The model's input size for a ``width`` x ``height`` image: shorter side raised to
    ``min_side``, longer side capped at ``max_side`` (the cap wins), both rounded to 32."""
    scale = max(1.0, min_side / min(width, height))
    scale = min(scale, max_side / max(width, height)) if max(width, height) * scale > max_side else scale
    return (max(32, int(round(width * scale / 32)) * 32), max(32, int(round(height * scale / 32)) * 32))


def db_regions(prob: np.ndarray, settings: TextSettings) -> list[tuple[np.ndarray, float]]:
    """DB post-processing of one probability map: per text region, its unclipped rotated
    rectangle (4 x 2 corners, map pixels) and its score (mean probability inside the contour)."""
    import cv2

    bitmap = (prob > settings.threshold).astype(np.uint8)
    bitmap = np.asarray(cv2.dilate(bitmap, np.ones((2, 2), np.uint8)), np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    regions: list[tuple[np.ndarray, float]] = []
    h, w = prob.shape
    for contour in contours[:1000]:
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < 3:
            continue
        x, y, bw, bh = cv2.boundingRect(contour)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillPoly(mask, [contour.reshape(-1, 2) - (x, y)], 1)
        score = float(cv2.mean(prob[y:y + bh, x:x + bw], mask)[0])
        if score < settings.box_threshold:
            continue
        # DB's unclip: the polygon offset outwards by area x ratio / perimeter (a rectangle: each side).
        distance = rw * rh * settings.unclip_ratio / (2 * (rw + rh))
        corners = cv2.boxPoints(((cx, cy), (rw + 2 * distance, rh + 2 * distance), angle))
        corners[:, 0] = np.clip(corners[:, 0], 0, w)
        corners[:, 1] = np.clip(corners[:, 1], 0, h)
        regions.append((corners, score))
    return regions


def _sides(corners: np.ndarray) -> tuple[float, float]:
    """A rotated box's short and long side."""
    a, b = (float(np.hypot(*(corners[i] - corners[i + 1]))) for i in range(2))
    return min(a, b), max(a, b)


def merged_lines(regions: Sequence[tuple[Face, bool]], min_aspect: float, gap: float = 1.0) -> list[Face]:
    """Text boxes of one line joined, then those not elongated dropped.

    ``regions``: each box, and whether its rotated region is elongated (long side >= ``min_aspect``
    x short side). Boxes whose vertical extents overlap by at least half the shorter one and whose
    horizontal gap is at most ``gap`` x the shorter height become their union (a plate's or a
    name's words are redacted as one box, the spaces between them too). A joined box is elongated
    when a member is or when it is ``min_aspect`` times wider than tall; only elongated boxes are kept.
    """
    boxes = sorted(regions, key=lambda r: r[0].x1)
    changed = True
    while changed:
        changed = False
        for i, (a, a_long) in enumerate(boxes):
            for j in range(i + 1, len(boxes)):
                b, b_long = boxes[j]
                short = min(a.height, b.height)
                overlap = min(a.y2, b.y2) - max(a.y1, b.y1)
                space = max(a.x1, b.x1) - min(a.x2, b.x2)
                if short > 0 and overlap >= 0.5 * short and space <= gap * short:
                    joined = Face(min(a.x1, b.x1), min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2),
                                  max(a.score, b.score), a.detector)
                    boxes[i] = (joined, a_long or b_long or joined.width >= min_aspect * joined.height)
                    del boxes[j]
                    changed = True
                    break
            if changed:
                break
    return [face for face, elongated in boxes if elongated]


class TextDetector:
    """PP-OCRv4's text detector on onnxruntime, image by image (CUDA when ``onnxruntime-gpu`` and a
    GPU are present under ``device: auto``, as CenterFace)."""

    name = TEXT

    def __init__(self, settings: TextSettings) -> None:
        path = text_model_path()
        if path is None:
            raise RuntimeError(NOT_INSTALLED)
        self._session: Any = onnx_session(_checked_model(path), settings.threads, settings.device)
        self._input = self._session.get_inputs()[0].name
        self.settings = settings
        self._reader: TextReader | None = None
        if settings.read:
            from transforms.detection.text_reading import TextReader

            self._reader = TextReader(settings.threads, settings.device)

    @classmethod
    def info(cls) -> dict[str, str]:
        return text_info()

    def probability(self, image: Image.Image) -> np.ndarray:
        """The model's text probability map of ``image`` at its input size."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        size = input_size(rgb.width, rgb.height, self.settings.min_side, self.settings.max_side)
        # PaddleOCR's models take BGR, scaled to [-1, 1].
        array = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR), np.float32)[..., ::-1]
        batch = ((array / 127.5) - 1.0).transpose(2, 0, 1)[None]
        return np.asarray(self._session.run(None, {self._input: np.ascontiguousarray(batch)})[0][0, 0])

    def _detect_one(self, image: Image.Image) -> list[Face]:
        prob = self.probability(image)
        sx, sy = image.width / prob.shape[1], image.height / prob.shape[0]
        faces: list[tuple[Face, bool]] = []
        for corners, score in db_regions(prob, self.settings):
            corners = corners * (sx, sy)
            short, long = _sides(corners)
            if short < self.settings.min_height:
                continue
            x1, y1 = corners.min(axis=0)
            x2, y2 = corners.max(axis=0)
            faces.append((Face(float(x1), float(y1), float(x2), float(y2), score, TEXT),
                          long >= self.settings.min_aspect * short))
        lines = merged_lines(faces, self.settings.min_aspect)
        if self._reader is None or not lines:
            return lines
        with timed("text_reading", len(lines)):
            readings = self._reader.read_all(image, [line.box for line in lines])
            return [line if reading.readable else dataclasses.replace(line, detector=UNREAD_TEXT)
                    for line, reading in zip(lines, readings, strict=True)]

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Text regions per image, as ``Face`` objects of kind ``text`` (axis-aligned boxes that
        cover each rotated region)."""
        return [self._detect_one(image) for image in images]


class TextAndFacesDetector:
    """A face detector and the text detector on the same batch; both lists kept, unmerged."""

    def __init__(self, faces: Detector, text: Detector) -> None:
        self._faces = faces
        self._text = text
        self.name = f"{faces.name}+{text.name}"

    def info(self) -> dict[str, str]:
        from transforms.detection.union import union_info

        return union_info([self._faces.info(), self._text.info()])

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Each image's faces, then its text regions."""
        faces = self._faces.detect(images)
        with timed(f"detector:{self._text.name}", len(images)):
            text = self._text.detect(images)
        return [list(f) + list(t) for f, t in zip(faces, text, strict=True)]


@dataclass(frozen=True)
class TextAndFacesFactory:
    """Builds a ``TextAndFacesDetector`` inside the worker (picklable)."""

    faces: DetectorFactory
    text: DetectorFactory

    def __call__(self) -> TextAndFacesDetector:
        return TextAndFacesDetector(self.faces(), self.text())

    def info(self) -> dict[str, str]:
        from transforms.detection.union import union_info

        return union_info([self.faces.info(), self.text.info()])

    @property
    def factories(self) -> tuple[DetectorFactory, DetectorFactory]:
        return (self.faces, self.text)

    @property
    def searches_windows(self) -> bool:
        """False: the text detector scales each image to its own input size (``input_size``), so a
        window would be searched at another scale than the whole output; outputs are searched whole."""
        return False

