"""Validated options turned into the typed values the stages take, in one place.

Option strings (``detector_extra``, ``detector_thresholds``, ``retinaface_scales``, ``redact``,
``centerface_rotations``, ``solid_color``) are parsed here only (``parse_settings``); the stages under transforms/ and
expectations/ take the values built here and never read options themselves.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from expectations.suites import GateThresholds
from pipelines.options import (
    AnonymizeOptions,
    parse_detector_extra,
    parse_redact,
    parse_rgb,
    parse_rotations,
    parse_scales,
    parse_thresholds,
)
from transforms.exclusions import Exclusions, read_identifier_file, split_identifiers
from transforms.identity_evidence import IdentityPolicy
from transforms.records import TEXT, ShardSpec
from transforms.replacement import ReplacementPolicy
from transforms.shards import plan_shards
from transforms.storage import Storage


@dataclass(frozen=True)
class ParsedOptions:
    """The option strings of a job, parsed (each raised ``ValueError`` names its field)."""

    detector_extra: tuple[str, ...]
    detector_thresholds: tuple[float, float, float]
    retinaface_scales: tuple[float, ...]
    redact: tuple[str, ...]
    solid_color: tuple[int, int, int]
    centerface_rotations: tuple[int, ...] = ()

    @property
    def text(self) -> bool:
        """Whether text regions are redacted too (``redact: faces,text``)."""
        return "text" in self.redact


def parse_settings(options: AnonymizeOptions) -> ParsedOptions:
    """Parse the option strings of ``options``.

    Raises:
        ValueError: naming the first malformed field.
    """
    return _parsed(options.solid_color, options.detector_thresholds, options.detector_extra,
                   options.retinaface_scales, options.redact, options.centerface_rotations)


@functools.lru_cache(maxsize=8)
def _parsed(solid_color: str, detector_thresholds: str, detector_extra: str, retinaface_scales: str,
            redact: str, centerface_rotations: str = "") -> ParsedOptions:
    """The option strings parsed, once per distinct set of strings (the launcher and ``run`` ask
    for them several times: validation, the detectors, the replacement policy)."""
    return ParsedOptions(
        solid_color=parse_rgb(solid_color, "solid_color"),
        detector_thresholds=parse_thresholds(detector_thresholds, "detector_thresholds"),
        detector_extra=parse_detector_extra(detector_extra, "detector_extra"),
        retinaface_scales=parse_scales(retinaface_scales, "retinaface_scales"),
        redact=parse_redact(redact),
        centerface_rotations=parse_rotations(centerface_rotations),
    )


def storage_for(options: AnonymizeOptions) -> Storage:
    """The run's storage: how every stage reaches the input, the output and model files."""
    return Storage(endpoint=options.s3_endpoint)


# ReplacementPolicy fields that are options of the same name.
_POLICY_OPTIONS = ("method", "box_margin", "blur_sigma_factor", "pixelate_blocks", "synthetic_generator",
                   "synthetic_generator_size", "synthetic_seed", "synthetic_attempts", "synthetic_soften",
                   "synthetic_target_distance", "synthetic_min_face_size", "synthetic_min_score", "synthetic_blend",
                   "synthetic_match")


def replacement_policy_for(options: AnonymizeOptions) -> ReplacementPolicy:
    """How faces are replaced: the method and its strength, and which detections are replaced."""
    parsed = parse_settings(options)
    return ReplacementPolicy(
        solid_color=parsed.solid_color,
        score_threshold=options.detector_score_threshold,
        self_thresholded_detectors=parsed.detector_extra + ((TEXT,) if parsed.text else ()),
        **{name: getattr(options, name) for name in _POLICY_OPTIONS},
    )


def identity_policy_for(options: AnonymizeOptions) -> IdentityPolicy:
    """How identity evidence is taken and used: the match threshold, the smallest measurable face,
    and whether a matched face is escalated."""
    return IdentityPolicy(options.identity_threshold, options.identity_min_face_size, options.identity_escalation)


def gate_thresholds_for(options: AnonymizeOptions) -> GateThresholds:
    """The Great Expectations gate's thresholds (shard suites and run expectations)."""
    return GateThresholds(
        allow_low_security=bool(options.allow_low_security),
        max_quarantine_share=float(options.gate_max_quarantine_share),
        reid_alpha=float(options.identity_reid_alpha),
        max_withheld_share=float(options.gate_max_withheld_share),
    )


def exclusions_for(options: AnonymizeOptions, storage: Storage) -> Exclusions:
    """The job's exclusions, their files read now (before any work).

    Raises:
        FileNotFoundError: naming the option whose file is missing.
        ValueError: subject ids listed without ``subject_field``.
    """
    sources = split_identifiers(options.exclude_source_uris)
    subjects = split_identifiers(options.exclude_subject_ids)
    for name, target in (("exclude_source_uris_file", sources), ("exclude_subject_ids_file", subjects)):
        uri = getattr(options, name)
        if uri:
            try:
                target.extend(read_identifier_file(uri, storage))
            except FileNotFoundError:
                raise FileNotFoundError(f"{name}: file not found: {uri}") from None
    return Exclusions(frozenset(sources), frozenset(subjects), options.subject_field)


def input_shards(options: AnonymizeOptions, storage: Storage) -> list[ShardSpec]:
    """The input's shards as the options describe the input."""
    return plan_shards(options.input, options.input_format, options.shard_size, options.image_column, storage)
