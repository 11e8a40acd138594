"""What every detector and detector factory is: the protocols the handler and the union rely on,
and ``Factory``, the one factory of the product's detectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from PIL import Image

from transforms.records import Face

DEVICES = ("auto", "cpu", "cuda")


def check_tiled_settings(threshold_name: str, threshold: float, min_face_size: int, torch_threads: int,
                         max_side: int, tile_overlap: int, device: str) -> None:
    """Validate the settings the tiled ONNX detectors (CenterFace, RetinaFace) share.

    Raises:
        ValueError: naming the bad field (the threshold as ``threshold_name``).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"{threshold_name} must be in (0, 1), got {threshold}")
    if min_face_size < 1:
        raise ValueError(f"min_face_size must be >= 1, got {min_face_size}")
    if torch_threads < 1:
        raise ValueError(f"torch_threads must be >= 1, got {torch_threads}")
    if max_side < 64:
        raise ValueError(f"max_side must be >= 64, got {max_side}")
    if not 0 <= tile_overlap < max_side // 2:
        raise ValueError(f"tile_overlap must be in [0, max_side / 2), got {tile_overlap}")


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
