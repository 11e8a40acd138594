"""The union of several detectors: one batch through each, their faces merged by IoU.

``UnionDetector`` runs several detectors on the same batch and merges their faces by IoU (NMS
across detectors): the higher-scored box is kept and its ``detector`` names every detector that
found the face (``fast_mtcnn+haar_profile``). ``merge_faces`` is that merge; detectors with several
passes (CenterFace's tiles, the Haar cascade's mirror image) use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from transforms.detection.base import Detector, DetectorFactory
from transforms.observability import timed
from transforms.records import Face


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

    def __init__(self, detectors: Sequence[Detector], iou_threshold: float = 0.3) -> None:
        if not detectors:
            raise ValueError("detectors must not be empty")
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        self._detectors = list(detectors)
        self._iou = iou_threshold
        self.name = "+".join(d.name for d in self._detectors)

    def info(self) -> dict[str, str]:
        return union_info([d.info() for d in self._detectors])

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Faces found by any of the detectors, merged."""
        per_detector = []
        for detector in self._detectors:
            with timed(f"detector:{detector.name}", len(images)):
                per_detector.append(detector.detect(images))
        return [merge_faces([face for faces in found for face in faces], self._iou)
                for found in zip(*per_detector, strict=True)]


def union_info(infos: Sequence[dict[str, str]]) -> dict[str, str]:
    """The manifest description of a union of detectors."""
    return {key: "+".join(info.get(key, "") for info in infos) for key in ("name", "version", "weights_sha256")}


@dataclass(frozen=True)
class UnionFactory:
    """Builds a ``UnionDetector`` of the given factories' detectors inside the worker (picklable)."""

    factories: Sequence[DetectorFactory]
    iou_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not self.factories:
            raise ValueError("factories must not be empty")
        object.__setattr__(self, "factories", tuple(self.factories))  # frozen: hashable, compared by value

    def __call__(self) -> UnionDetector:
        return UnionDetector([f() for f in self.factories], self.iou_threshold)

    def info(self) -> dict[str, str]:
        return union_info([f.info() for f in self.factories])

    @property
    def searches_windows(self) -> bool:
        """Whether a window of an image is searched as the image is there (every member's)."""
        return all(getattr(f, "searches_windows", True) for f in self.factories)
