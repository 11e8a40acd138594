"""What every detector and detector factory is: the protocols the handler and the union rely on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image

from transforms.records import Face


class Detector(Protocol):
    """Anything that finds faces in a batch of upright RGB images."""

    name: str

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]: ...

    def info(self) -> dict[str, str]: ...


class DetectorFactory(Protocol):
    """Builds a detector inside a worker; picklable, and describes the detector for the manifest."""

    def __call__(self) -> Detector: ...

    def info(self) -> dict[str, str]: ...
