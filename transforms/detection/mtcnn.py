"""facenet-pytorch's MTCNN with its shipped weights (``detector: mtcnn``), batched, CPU or CUDA.

A batch is padded to a common canvas, so boxes need no mapping back.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from transforms.records import Face


@dataclass(frozen=True)
class MtcnnSettings:
    """Settings of the MTCNN detector; validated on construction."""

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    device: str = "auto"
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.min_face_size < 8:
            raise ValueError(f"min_face_size must be >= 8, got {self.min_face_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")


@functools.cache
def facenet_data_dir() -> Path:
    """The folder of facenet-pytorch's shipped MTCNN weights (``pnet.pt``, ``rnet.pt``, ``onet.pt``),
    found without importing facenet_pytorch: it imports torchvision (and torch's compiler), some
    seconds a process would spend only to find three files."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("detector: mtcnn/fast_mtcnn needs facenet-pytorch (pip install facenet-pytorch)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.cache
def _weights_sha256() -> str:
    digest = hashlib.sha256()
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        digest.update((facenet_data_dir() / name).read_bytes())
    return digest.hexdigest()


def mtcnn_info() -> dict[str, str]:
    """Name, version and weights hash of the MTCNN detector, for the manifest."""
    return {
        "name": "mtcnn",
        "version": "facenet-pytorch " + importlib.metadata.version("facenet-pytorch"),
        "weights_sha256": _weights_sha256(),
    }


def _pad_to_canvas(images: Sequence[Image.Image]) -> list[Image.Image]:
    width = max(image.width for image in images)
    height = max(image.height for image in images)
    padded = []
    for image in images:
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        if rgb.size == (width, height):
            padded.append(rgb)
            continue
        canvas = Image.new("RGB", (width, height))
        canvas.paste(rgb, (0, 0))
        padded.append(canvas)
    return padded


class MtcnnDetector:
    """facenet-pytorch's MTCNN with its shipped weights, keep_all faces, landmarks kept."""

    name = "mtcnn"

    def __init__(self, settings: MtcnnSettings) -> None:
        import torch
        from facenet_pytorch import MTCNN

        torch.set_num_threads(settings.torch_threads)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self._settings = settings
        self._model = MTCNN(
            keep_all=True,
            min_face_size=settings.min_face_size,
            thresholds=list(settings.thresholds),
            device=device,
            post_process=False,
        ).eval()

    @classmethod
    def info(cls) -> dict[str, str]:
        return mtcnn_info()

    def _detect_same_canvas(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        import torch

        with torch.inference_mode():
            boxes, probs, points = self._model.detect(list(images), landmarks=True)
        results: list[list[Face]] = []
        for image_boxes, image_probs, image_points in zip(boxes, probs, points, strict=True):
            faces: list[Face] = []
            if image_boxes is not None:
                for box, prob, marks in zip(image_boxes, image_probs, image_points, strict=True):
                    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=float))
                    landmarks = tuple((float(x), float(y)) for x, y in np.asarray(marks, float))
                    faces.append(Face(x1, y1, x2, y2, float(prob), self.name, landmarks))
            results.append(faces)
        return results

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Detect faces on a batch; images smaller than the min face size have none.

        On CPU each image runs alone: batching gains nothing there, and an image's faces then do
        not depend on which images share its batch (bundles differ between runners; torch's
        float results differ in the last bits with the batch shape and padding).
        """
        results: list[list[Face]] = [[] for _ in images]
        searchable = [i for i, im in enumerate(images)
                      if min(im.size) >= self._settings.min_face_size]
        if not searchable:
            return results
        if self.device == "cpu" and len(searchable) > 1:
            for i in searchable:
                results[i] = self.detect([images[i]])[0]
            return results
        canvas = _pad_to_canvas([images[i] for i in searchable])
        for i, faces in zip(searchable, self._detect_same_canvas(canvas), strict=True):
            width, height = images[i].size
            results[i] = [f for f in faces if f.x1 < width and f.y1 < height]
        return results
