"""Second, independent detectors and the union of several detectors.

``HaarProfileDetector`` runs OpenCV's profile-face Haar cascade (``haarcascade_profileface.xml``,
shipped inside the opencv-python-headless 4.x wheel, Intel License Agreement: BSD-style) on each
image and its mirror image, so faces turned either way are found; MTCNN's weak spot is profiles.
Haar cascades give no calibrated score, so their faces carry a fixed ``score`` (by default above
the replacement threshold and below the verification threshold: they are always replaced, but a
Haar hit on an output alone does not quarantine it).

``UnionDetector`` runs several detectors on the same batch and merges their faces by IoU (NMS
across detectors): the higher-scored box is kept and its ``detector`` names every detector that
found the face (``fast_mtcnn+haar_profile``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from transforms.records import Face

HAAR_PROFILE = "haar_profile"
EXTRA_DETECTORS = (HAAR_PROFILE,)


def _cascade_path() -> Path:
    import cv2

    return Path(cv2.data.haarcascades) / "haarcascade_profileface.xml"  # type: ignore[attr-defined]


def haar_info() -> dict[str, str]:
    """Name, version and cascade hash of the Haar profile detector, for the manifest."""
    return {
        "name": HAAR_PROFILE,
        "version": "opencv-python-headless " + importlib.metadata.version("opencv-python-headless"),
        "weights_sha256": hashlib.sha256(_cascade_path().read_bytes()).hexdigest(),
    }


@dataclass(frozen=True)
class HaarSettings:
    """Settings of the Haar profile detector; validated on construction."""

    min_face_size: int = 20
    scale_factor: float = 1.1
    min_neighbors: int = 5
    score: float = 0.8

    def __post_init__(self) -> None:
        if self.min_face_size < 8:
            raise ValueError(f"min_face_size must be >= 8, got {self.min_face_size}")
        if not 1.01 <= self.scale_factor <= 2.0:
            raise ValueError(f"scale_factor must be in [1.01, 2], got {self.scale_factor}")
        if self.min_neighbors < 1:
            raise ValueError(f"min_neighbors must be >= 1, got {self.min_neighbors}")
        if not 0.0 < self.score <= 1.0:
            raise ValueError(f"score must be in (0, 1], got {self.score}")


class HaarProfileDetector:
    """OpenCV's profile-face cascade on the image and its mirror (faces turned either way)."""

    name = HAAR_PROFILE

    def __init__(self, settings: HaarSettings) -> None:
        import cv2

        path = _cascade_path()
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}")
        cv2.setNumThreads(1)
        self.settings = settings

    def info(self) -> dict[str, str]:
        return haar_info()

    def _run(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        s = self.settings
        found = self._cascade.detectMultiScale(gray, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
                                               minSize=(s.min_face_size, s.min_face_size))
        return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Profile faces of each image, in its pixel coordinates."""
        results: list[list[Face]] = []
        for image in images:
            if min(image.size) < self.settings.min_face_size:
                results.append([])
                continue
            gray = np.ascontiguousarray(np.asarray(image.convert("L")))
            width = gray.shape[1]
            boxes = [(x, y, x + w, y + h) for x, y, w, h in self._run(gray)]
            mirrored = self._run(np.ascontiguousarray(gray[:, ::-1]))
            boxes += [(width - x - w, y, width - x, y + h) for x, y, w, h in mirrored]
            faces = [Face(float(a), float(b), float(c), float(d), self.settings.score, HAAR_PROFILE)
                     for a, b, c, d in boxes]
            results.append(merge_faces(faces, 0.3))
        return results


class HaarProfileFactory:
    """Builds a ``HaarProfileDetector`` inside the worker (picklable)."""

    def __init__(self, settings: HaarSettings) -> None:
        self.settings = settings

    def __call__(self) -> HaarProfileDetector:
        return HaarProfileDetector(self.settings)

    def info(self) -> dict[str, str]:
        return haar_info()



def merge_faces(faces: Sequence[Face], iou_threshold: float) -> list[Face]:
    """NMS over faces from any detectors: the best-scored face of each overlapping group is kept,
    and its ``detector`` lists every detector that found the face (in order of first appearance)."""
    ordered = sorted(faces, key=lambda f: f.score, reverse=True)
    kept: list[Face] = []
    finders: list[list[str]] = []
    for face in ordered:
        for i, other in enumerate(kept):
            if face.iou(other) > iou_threshold:
                for name in face.detector.split("+"):
                    if name not in finders[i]:
                        finders[i].append(name)
                break
        else:
            kept.append(face)
            finders.append(face.detector.split("+"))
    return [Face(f.x1, f.y1, f.x2, f.y2, f.score, "+".join(names), f.landmarks)
            for f, names in zip(kept, finders, strict=True)]


class UnionDetector:
    """Several detectors on the same batch; their faces merged by IoU."""

    def __init__(self, detectors: Sequence[object], iou_threshold: float = 0.3) -> None:
        if not detectors:
            raise ValueError("detectors must not be empty")
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        self._detectors = list(detectors)
        self._iou = iou_threshold
        self.name = "+".join(d.name for d in self._detectors)  # type: ignore[attr-defined]

    def info(self) -> dict[str, str]:
        return union_info([d.info() for d in self._detectors])  # type: ignore[attr-defined]

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Faces found by any of the detectors, merged."""
        per_detector = [d.detect(images) for d in self._detectors]  # type: ignore[attr-defined]
        return [merge_faces([face for faces in found for face in faces], self._iou)
                for found in zip(*per_detector, strict=True)]


def union_info(infos: Sequence[dict[str, str]]) -> dict[str, str]:
    """The manifest description of a union of detectors."""
    return {key: "+".join(info.get(key, "") for info in infos) for key in ("name", "version", "weights_sha256")}


class UnionFactory:
    """Builds a ``UnionDetector`` of the given factories' detectors inside the worker (picklable)."""

    def __init__(self, factories: Sequence[object], iou_threshold: float = 0.3) -> None:
        if not factories:
            raise ValueError("factories must not be empty")
        self.factories = list(factories)
        self.iou_threshold = iou_threshold

    def __call__(self) -> UnionDetector:
        return UnionDetector([f() for f in self.factories], self.iou_threshold)  # type: ignore[operator]

    def info(self) -> dict[str, str]:
        return union_info([f.info() for f in self.factories])  # type: ignore[attr-defined]
