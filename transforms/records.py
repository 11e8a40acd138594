"""The small value types that flow between stages: encoded bytes, never decoded arrays."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PUBLISHED = "published"
QUARANTINED = "quarantined"
EXCLUDED = "excluded"  # objection or withdrawn consent: never decoded or processed
ERASED = "erased"  # removed from the outputs by `anonymize erase` (manifest rows only)
# A region's kind: a face, or visible text (a ``Face`` whose detector is the text detector, ``TEXT``).
FACE = "face"
TEXT = "text"
# A text region the verify stage found on an output but could not read (transforms/detection/text_reading.py).
UNREAD_TEXT = "unread_text"
# Face replacement methods; the reversible ones are low security (allowed only when asked for).
REPLACEMENT_METHODS = ("gaussian", "solid", "pixelate", "synthetic")
LOW_SECURITY_METHODS = frozenset({"pixelate"})


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class Face:
    """One detected face in original-image pixel coordinates."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    detector: str = "mtcnn"
    landmarks: tuple[tuple[float, float], ...] = ()

    @property
    def kind(self) -> str:
        """``text`` for a region only the text detector found (read or not), else ``face``."""
        return TEXT if self.detector in (TEXT, UNREAD_TEXT) else FACE

    def counts_at(self, threshold: float) -> bool:
        """Whether this detection counts as found at a verification ``threshold``: a face's score
        must reach it; a text region counts at any score (its detector applied its own threshold)
        unless the verify stage's reader could not read it (``UNREAD_TEXT``)."""
        if self.kind == TEXT:
            return self.detector == TEXT
        return self.score >= threshold

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def diagonal(self) -> float:
        return float((self.width**2 + self.height**2) ** 0.5)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def iou(self, other: Face) -> float:
        """Intersection over union with another face's box."""
        return box_iou(self.box, other.box)

    def mapped(self, sx: float = 1.0, sy: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> Face:
        """This face in another image's pixels (box and landmarks): x * sx + dx, y * sy + dy."""
        return Face(self.x1 * sx + dx, self.y1 * sy + dy, self.x2 * sx + dx, self.y2 * sy + dy, self.score,
                    self.detector, tuple((x * sx + dx, y * sy + dy) for x, y in self.landmarks))

    @property
    def short_side(self) -> float:
        return min(self.width, self.height)

    def as_row(self) -> dict[str, Any]:
        return {
            "x1": float(self.x1), "y1": float(self.y1), "x2": float(self.x2),
            "y2": float(self.y2), "score": float(self.score), "detector": self.detector,
        }


@dataclass(frozen=True)
class ShardSpec:
    """One input shard and where its output goes; the unit of commit and resume."""

    shard_id: str
    format: str
    input_uris: tuple[str, ...]
    relative_paths: tuple[str, ...]
    output_name: str
    image_column: str = ""


@dataclass(frozen=True)
class Record:
    """One input image as it travels through the job.

    ``data`` holds the current encoded bytes: the source bytes until the replace stage, the
    anonymized output after it. ``extras`` carries sidecars or columns through unchanged.
    """

    shard_id: str
    index: int
    record_id: str
    source_uri: str
    relative_path: str
    source_sha256: str
    data: bytes
    extras: tuple[tuple[str, Any], ...] = ()
    width: int = 0
    height: int = 0
    source_format: str = ""
    faces: tuple[Face, ...] = ()
    method: str = ""
    security_level: str = ""
    metadata_removed: tuple[str, ...] = ()
    residual_faces: int = -1
    metadata_remaining: tuple[str, ...] = ()
    output_sha256: str = ""
    staged_path: str = ""
    pixel_change: float = -1.0
    # Output quality against the original (NaN where undefined; -1 until measured).
    psnr: float = -1.0
    ssim: float = -1.0
    psnr_outside_faces: float = -1.0
    ssim_outside_faces: float = -1.0
    # Reference classifier (transforms/accuracy.py): input views of original + output until
    # classified, then top-5 class indices of both; label -1 when none.
    reference_views: bytes = b""
    reference_label: int = -1
    reference_top5_original: tuple[int, ...] = ()
    reference_top5_anonymized: tuple[int, ...] = ()
    reference_top1_prob_original: float = -1.0
    reference_top1_prob_anonymized: float = -1.0
    # Identity evidence (transforms/identity.py), one value per face: distance to the original
    # face ("checked"), or none ("skipped" when identity_check is off); the generator used.
    identity_check: str = ""
    identity_distances: tuple[float, ...] = ()
    # Per face, the method that replaced it and why it is not the record's ``method`` ("": it is;
    # ``small`` / ``low_confidence`` / ``unmeasurable``: blurred under synthetic; ``escalated``).
    face_methods: tuple[str, ...] = ()
    face_method_reasons: tuple[str, ...] = ()
    # Per face, its identity status (identity.FaceStatus; distances are NaN where not measured).
    identity_statuses: tuple[str, ...] = ()
    # In the pipeline only, never written: per measured face the original's and the replacement's
    # embeddings (identity_evidence.VECTOR_WIDTH float32 each), for the shard's re-identification
    # test at the commit, which sets the rank-1 figures below and drops them.
    identity_vectors: bytes = b""
    identity_rank1_hits: int = 0
    identity_rank1_probes: int = 0
    identity_rank1_gallery: int = 0
    reid_p_value: float = math.nan
    # Per face, how far its replacement was escalated because it still matched its original:
    # 0 none, 1 twice the margin and blur, 2 a solid fill over twice the margin.
    escalations: tuple[int, ...] = ()
    generator: str = ""
    # Faces the verification detector found on the output (all scores), and per replaced face
    # the best score of a re-detection overlapping it (0: none).
    output_faces: tuple[Face, ...] = ()
    redetected_scores: tuple[float, ...] = ()
    # How the output was written: "reencoded" from pixels, or "stripped" (a JPEG with no face to
    # replace: its compressed data kept, metadata segments dropped). ``output_same_pixels``: the
    # output decodes to exactly the pixels the detect stage searched (no face replaced, lossless
    # output), so that stage's faces are the output's (``output_faces``, set with it).
    output_encoding: str = ""
    output_same_pixels: bool = False
    # In the pipeline only: the bounding boxes of the groups of pixels the replace stage changed
    # (transforms/verify_scope.py), where verification searches the output when its scope is "regions".
    changed_regions: tuple[tuple[int, int, int, int], ...] = ()
    # How verification found the output's faces: "ran" (the verification detector on the whole
    # output), "regions" (on windows around ``changed_regions``, the detect stage's search of the
    # source standing for the rest) or "reused" (``output_same_pixels``: the detect stage's run on
    # those same pixels).
    verify_detection: str = ""
    # The source bytes, kept from the replace stage to verification when a second pass is allowed:
    # faces verification finds on the output are added to ``faces`` and the source replaced again
    # (``replace_pass`` 2). Dropped once verified or quarantined; never written.
    source_data: bytes = b""
    replace_pass: int = 1
    # Data subject (transforms/exclusions.py, from ``subject_field``): for exclusions and erasure lineage.
    subject_id: str = ""
    status: str = ""
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)

    def quarantine(self, reason: str) -> Record:
        """This record, marked quarantined; its bytes are dropped so they can never be written."""
        return dataclasses.replace(self, status=QUARANTINED, reason=reason, data=b"", reference_views=b"",
                                   identity_vectors=b"", source_data=b"")

    def exclude(self, reason: str) -> Record:
        """This record, marked excluded; its bytes and sidecars are dropped before anything reads them."""
        return dataclasses.replace(self, status=EXCLUDED, reason=reason, data=b"", extras=(), reference_views=b"",
                                   source_sha256="", identity_vectors=b"", source_data=b"")

    @property
    def is_excluded(self) -> bool:
        return self.status == EXCLUDED

    @property
    def is_quarantined(self) -> bool:
        return self.status == QUARANTINED

    @property
    def is_withheld(self) -> bool:
        """Quarantined or excluded: never in the published output."""
        return self.status in (QUARANTINED, EXCLUDED)
