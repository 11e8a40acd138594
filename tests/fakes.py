"""Test detectors: picklable factories that raise, miss, or return fixed boxes."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from transforms.records import Face


class _Fixed:
    name = "fixed"

    def __init__(self, boxes: Sequence[tuple[float, float, float, float, float]],
                 raise_on_width: int | None) -> None:
        self._boxes = boxes
        self._raise_on_width = raise_on_width

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        if self._raise_on_width is not None and any(i.width == self._raise_on_width for i in images):
            raise RuntimeError("detector exploded")
        return [[Face(*box, detector=self.name) for box in self._boxes] for _ in images]

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": "test", "weights_sha256": ""}


class FixedBoxesFactory:
    """Every image gets the same boxes (x1, y1, x2, y2, score)."""

    def __init__(self, boxes: Sequence[tuple[float, float, float, float, float]] = (),
                 raise_on_width: int | None = None) -> None:
        self.boxes = tuple(boxes)
        self.raise_on_width = raise_on_width

    def __call__(self) -> _Fixed:
        return _Fixed(self.boxes, self.raise_on_width)

    def info(self) -> dict[str, str]:
        return {"name": "fixed", "version": "test", "weights_sha256": ""}


class _Textured:
    name = "textured"

    def __init__(self, boxes: Sequence[tuple[float, float, float, float, float]], min_std: float) -> None:
        self._boxes = boxes
        self._min_std = min_std

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        import numpy as np

        out = []
        for image in images:
            grey = np.asarray(image.convert("L"), dtype=np.float32)
            out.append([Face(*box, detector=self.name) for box in self._boxes
                        if grey[int(box[1]):int(box[3]), int(box[0]):int(box[2])].std() >= self._min_std])
        return out

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": "test", "weights_sha256": ""}


class TexturedBoxesFactory:
    """Finds each of ``boxes`` whose pixels still have texture (grey standard deviation at least
    ``min_std``): a stand-in for a detector that no longer finds a face once it is blurred."""

    def __init__(self, boxes: Sequence[tuple[float, float, float, float, float]] = (), min_std: float = 20.0) -> None:
        self.boxes = tuple(boxes)
        self.min_std = min_std

    def __call__(self) -> _Textured:
        return _Textured(self.boxes, self.min_std)

    def info(self) -> dict[str, str]:
        return {"name": "textured", "version": "test", "weights_sha256": ""}
