"""The detectors of a run, decided once: one to detect faces, one to re-check the outputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from transforms.detection.base import DetectorFactory, Factory
from transforms.detection.text import TextAndFacesFactory
from transforms.detection.union import UnionFactory


def detector_settings(factory: DetectorFactory) -> dict[str, dict[str, Any]]:
    """The settings each of the factory's detectors runs with, by detector name (a union: each
    member's); empty for a factory that is not one of the product's (a test fake)."""
    if isinstance(factory, (UnionFactory, TextAndFacesFactory)):
        return {name: settings for member in factory.factories for name, settings in detector_settings(member).items()}
    if isinstance(factory, Factory):
        settings = factory.settings
        if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
            return {factory.detector.name: dataclasses.asdict(settings)}
    return {}


def detector_record(factory: DetectorFactory) -> dict[str, Any]:
    """What the record of processing and the run summary keep of a detector: its manifest info
    (name, version, weights hash) and, where known, the settings of each detector."""
    record: dict[str, Any] = dict(factory.info())
    settings = detector_settings(factory)
    if settings:
        record["settings"] = settings
    return record


@dataclass(frozen=True)
class DetectorStack:
    """The run's detect and verify detectors (picklable factories).

    ``verify_is_detect_subset``: on the same pixels the verify detector finds only faces the detect
    one finds, because it is the detect detector, or that one less detection-only extras
    (CenterFace's low-light pass). Only then may verification reuse the detect stage's faces on an
    output with the very pixels that stage searched.
    """

    detect: DetectorFactory
    verify: DetectorFactory
    verify_is_detect_subset: bool = False

    @classmethod
    def of(cls, detect: DetectorFactory, verify: DetectorFactory | None = None) -> DetectorStack:
        """``detect`` verified by ``verify``, or by ``detect`` itself when none is given (tests,
        benchmarks): a different verify detector is not known to be a subset."""
        return cls(detect, verify or detect, verify is None or verify is detect)

    def info(self) -> dict[str, dict[str, Any]]:
        """Both detectors as the record of processing keeps them (``detector_record``)."""
        return {"detect": detector_record(self.detect), "verify": detector_record(self.verify)}
