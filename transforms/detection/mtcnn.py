"""Face detection: facenet-pytorch MTCNN behind a Beam ``ModelHandler``, batched, CPU or CUDA.

The handler takes ``Record``s (encoded bytes), decodes each once, detects faces on a batch
padded to a common canvas (so boxes need no mapping back), and returns the records with their
faces. The same handler re-detects on outputs in verification mode.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from apache_beam.ml.inference.base import ModelHandler
from PIL import Image

from transforms.decode import ImageRejected, load_normalized
from transforms.records import Face, Record


class Detector(Protocol):
    """Anything that finds faces in a batch of upright RGB images."""

    name: str

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]: ...

    def info(self) -> dict[str, str]: ...


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


def default_torch_threads(workers: int) -> int:
    """Torch threads per worker so that workers x threads never exceeds the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def _weights_sha256() -> str:
    import facenet_pytorch

    data_dir = Path(facenet_pytorch.__file__).parent / "data"
    digest = hashlib.sha256()
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        digest.update((data_dir / name).read_bytes())
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

    def info(self) -> dict[str, str]:
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


class DetectorFactory(Protocol):
    """Builds a detector inside a worker; picklable, and describes the detector for the manifest."""

    def __call__(self) -> Detector: ...

    def info(self) -> dict[str, str]: ...


class MtcnnFactory:
    """Builds an ``MtcnnDetector`` inside the worker (picklable)."""

    def __init__(self, settings: MtcnnSettings) -> None:
        self.settings = settings

    def __call__(self) -> Detector:
        return MtcnnDetector(self.settings)

    def info(self) -> dict[str, str]:
        return mtcnn_info()


class FaceDetectionHandler(ModelHandler[Record, Record, Detector]):
    """Runs a face detector on batches of records.

    In ``detect`` mode the records' faces are set; in ``verify`` mode the records' bytes are the
    anonymized outputs and ``residual_faces`` counts faces at or above ``verify_threshold``.
    A record that cannot be decoded or detected is quarantined with the reason; a batch that
    fails is retried image by image so one bad image never takes its neighbours with it.
    With ``reuse_same_pixels`` (verify mode; only when this detector is the detect stage's, or that
    one less detection-only extras), a record whose output decodes to exactly the pixels the detect
    stage searched (``output_same_pixels``) keeps that run's faces instead of a second, identical
    run: a detector gives the same faces on the same pixels.
    The model loads once per worker process (RunInference's ``shared.Shared`` handle), shared by
    its threads; with ``share_across_processes`` once per machine (Beam's ``MultiProcessShared``).
    """

    def __init__(self, factory: DetectorFactory, batch_size: int, max_pixels: int,
                 mode: str = "detect", verify_threshold: float = 0.9,
                 share_across_processes: bool = False, reuse_same_pixels: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if mode not in ("detect", "verify"):
            raise ValueError(f"mode must be detect or verify, got {mode!r}")
        super().__init__()
        self._factory = factory
        self._batch_size = batch_size
        self._max_pixels = max_pixels
        self._mode = mode
        self._verify_threshold = verify_threshold
        self._share_across_processes = share_across_processes
        self._reuse_same_pixels = reuse_same_pixels and mode == "verify"

    def load_model(self) -> Detector:
        return self._factory()

    def share_model_across_processes(self) -> bool:
        """One model per worker machine, served to its SDK processes (GPU memory), when asked for."""
        return self._share_across_processes

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def _apply(self, record: Record, faces: Sequence[Face], how: str = "ran") -> Record:
        if self._mode == "detect":
            return record.replace(faces=tuple(faces))
        residual = sum(1 for face in faces if face.score >= self._verify_threshold)
        return record.replace(residual_faces=residual, output_faces=tuple(faces), verify_detection=how)

    def run_inference(self, batch: Sequence[Record], model: Detector,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Record]:
        stage = "detect" if self._mode == "detect" else "verify"
        out: list[Record | None] = [None] * len(batch)
        images: list[Image.Image] = []
        positions: list[int] = []
        for i, record in enumerate(batch):
            if record.is_quarantined:
                out[i] = record
                continue
            if self._reuse_same_pixels and record.output_same_pixels:
                out[i] = self._apply(record, record.output_faces, "reused")
                continue
            try:
                image, _ = load_normalized(record.data, self._max_pixels)
            except ImageRejected as rejected:
                out[i] = record.quarantine(f"{stage}:{rejected.reason}")
                continue
            images.append(image)
            positions.append(i)
        try:
            detections = model.detect(images) if images else []
        except Exception:  # noqa: BLE001 - retried one by one below; failures are quarantined
            detections = []
            for image, i in zip(images, positions, strict=True):
                try:
                    detections.append(model.detect([image])[0])
                except Exception as error:  # noqa: BLE001 - a detector error quarantines
                    detections.append([])
                    out[i] = batch[i].quarantine(
                        f"{stage}:detector_error:{type(error).__name__}")
        for i, faces in zip(positions, detections, strict=True):
            if out[i] is None:
                out[i] = self._apply(batch[i], faces)
        return [record for record in out if record is not None]

    def get_metrics_namespace(self) -> str:
        return f"anonymize_{self._mode}"
