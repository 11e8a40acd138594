"""What every detector and detector factory is: the protocols the handler and the union rely on,
and ``Factory``, the one factory of the product's detectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from PIL import Image

from transforms.records import Face

SettingsT = TypeVar("SettingsT")
SettingsT_contra = TypeVar("SettingsT_contra", contravariant=True)


class Detector(Protocol):
    """Anything that finds faces in a batch of upright RGB images."""

    name: str

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]: ...

    def info(self) -> dict[str, str]: ...


class DetectorFactory(Protocol):
    """Builds a detector inside a worker; picklable, and describes the detector for the manifest."""

    def __call__(self) -> Detector: ...

    def info(self) -> dict[str, str]: ...


class DetectorClass(Protocol[SettingsT_contra]):
    """A detector class as ``Factory`` uses it: built from its settings, and described by its
    ``info`` classmethod without being built (no model loaded in the launcher)."""

    name: str

    def __call__(self, settings: SettingsT_contra, /) -> Detector: ...

    def info(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Factory(Generic[SettingsT]):
    """Builds ``detector(settings)`` inside the worker: picklable (the class goes by its name, the
    settings are a frozen dataclass), and describes the detector for the manifest."""

    detector: DetectorClass[SettingsT]
    settings: SettingsT

    def __call__(self) -> Detector:
        return self.detector(self.settings)

    def info(self) -> dict[str, str]:
        return self.detector.info()
