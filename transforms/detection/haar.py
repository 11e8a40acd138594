"""OpenCV's profile-face Haar cascade (``detector_extra: haar_profile``).

``HaarProfileDetector`` runs OpenCV's profile-face Haar cascade (``haarcascade_profileface.xml``,
shipped inside the opencv-python-headless 4.x wheel, Intel License Agreement: BSD-style) on each
image and its mirror image, so faces turned either way are found; MTCNN's weak spot is profiles.
Haar cascades give no calibrated score, so their faces carry a fixed ``score`` (by default above
the replacement threshold and below the verification threshold: they are always replaced, but a
Haar hit on an output alone does not quarantine it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from transforms.detection.union import merge_faces
from transforms.records import Face

HAAR_PROFILE = "haar_profile"


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

    @classmethod
    def info(cls) -> dict[str, str]:
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
