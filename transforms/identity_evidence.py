"""Identity evidence of one image: one status per replaced face (``FaceStatus``), decided where the
embedding can say something, and the vectors the shard's re-identification test needs.

A face is measured only when it is ``identity_min_face_size`` px or more, was not solid-filled, and
dlib's frontal detector finds a face in the original at its place. A measured face is ``matched``
when its replacement is within the threshold of its original *and* at least as close to it as to
every other measurable original of the image and every impostor of the fixed gallery (less the
original itself, ``impostors_of``; ``identity.is_match``): the image's originals are a subset of
the shard's, so a face that would be picked out among the shard's originals is picked out here too.
Only ``matched`` faces are escalated, and only they can quarantine a record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from transforms.identity import (
    MATCH_THRESHOLD,
    MIN_IDENTIFIABLE_FACE,
    FaceStatus,
    IdentityEmbedder,
    Reference,
    gallery_distances,
    is_match,
    probe_distance,
)
from transforms.records import Face

# Per measured face, packed for the shard test: the original's embedding, the replacement's two
# embeddings, and the replacement's distance to the nearest impostor.
VECTOR_WIDTH = 3 * 128 + 1


@dataclass(frozen=True)
class IdentityPolicy:
    """How identity evidence is taken and used; validated on construction."""

    threshold: float = MATCH_THRESHOLD
    min_face_size: int = MIN_IDENTIFIABLE_FACE
    escalate: bool = True

    def __post_init__(self) -> None:
        if not MATCH_THRESHOLD <= self.threshold <= 2.0:
            raise ValueError(f"identity_threshold must be in [{MATCH_THRESHOLD}, 2], got {self.threshold}")
        if self.min_face_size < 20:
            raise ValueError(f"identity_min_face_size must be >= 20, got {self.min_face_size}")


@dataclass(frozen=True)
class ImageEvidence:
    """Per face (in ``faces`` order): status and distance (NaN where not measured); ``vectors``:
    float32 [measured faces, ``VECTOR_WIDTH``] for the shard test (never written to any output)."""

    statuses: tuple[str, ...]
    distances: tuple[float, ...]
    vectors: bytes = b""

    @property
    def matched(self) -> list[int]:
        return [i for i, status in enumerate(self.statuses) if status == FaceStatus.MATCHED]


def screen_faces(embedder: IdentityEmbedder, original: np.ndarray, faces: Sequence[Face], policy: IdentityPolicy,
                 solid: bool) -> list[str | None]:
    """Per face, the status decided without measuring (``None``: the face is measurable).

    ``solid``: the replacement is a solid fill, which leaves no original pixel in the mask.
    """
    statuses: list[str | None] = []
    for face in faces:
        if solid:
            statuses.append(FaceStatus.REMOVED_BY_CONSTRUCTION)
        elif face.short_side < policy.min_face_size:
            statuses.append(FaceStatus.UNMEASURABLE_SMALL)
        elif not embedder.readable(original, face):
            statuses.append(FaceStatus.UNMEASURABLE_NO_FACE)
        else:
            statuses.append(None)
    return statuses


# A gallery face this near an original (dlib distance) is that face itself (the same photo: the
# gallery's astronaut and cameraman are in the demo set), not another person: it is no impostor for
# it. Two photos of one person are about 0.3-0.5 apart, of two people 0.6 and more.
SAME_FACE_DISTANCE = 0.1


def impostors_of(impostors: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The impostor gallery [G, 128] less the faces within ``SAME_FACE_DISTANCE`` of ``original`` [128]."""
    if not len(impostors):
        return impostors
    return impostors[np.linalg.norm(impostors - original[None, :], axis=1) > SAME_FACE_DISTANCE]


def measure_image(embedder: IdentityEmbedder, references: Mapping[int, Reference], replaced: np.ndarray,
                  screened: Sequence[str | None], solid_filled: Sequence[bool],
                  policy: IdentityPolicy) -> ImageEvidence:
    """The evidence of one rendering: ``references`` of the measurable faces (by face index),
    ``replaced`` the decoded output (H x W x 3 uint8 RGB), ``solid_filled`` per face whether it was
    filled solid (an escalation), which removes it by construction."""
    statuses = [FaceStatus.REMOVED_BY_CONSTRUCTION if filled else status
                for status, filled in zip(screened, solid_filled, strict=True)]
    distances = [math.nan] * len(statuses)
    measured = [i for i in sorted(references) if statuses[i] is None]
    probes = embedder.probes([references[i] for i in measured], replaced)
    indices = sorted(references)
    gallery = np.stack([references[i].embedding for i in indices]) if indices else np.zeros((0, 128))
    impostors = embedder.impostors()
    rows = []
    for probe, i in zip(probes, measured, strict=True):
        own = probe_distance(probe, references[i].embedding)
        others = gallery_distances(probe, np.delete(gallery, indices.index(i), axis=0))
        others_of_gallery = impostors_of(impostors, references[i].embedding)
        nearest_impostor = float(gallery_distances(probe, others_of_gallery).min()) if len(others_of_gallery) \
            else math.inf
        nearest_other = min(float(others.min()) if len(others) else math.inf, nearest_impostor)
        statuses[i] = FaceStatus.MATCHED if is_match(own, nearest_other, policy.threshold) \
            else FaceStatus.MEASURED_NO_MATCH
        distances[i] = own
        rows.append(np.concatenate([references[i].embedding, probe.reshape(-1), [nearest_impostor]]))
    vectors = np.asarray(rows, dtype=np.float32).tobytes() if rows else b""
    final = tuple(status for status in statuses if status is not None)
    if len(final) != len(statuses):
        raise ValueError("measure_image: a measurable face has no reference")
    return ImageEvidence(final, tuple(distances), vectors)


def unpack_vectors(vectors: bytes) -> np.ndarray:
    """``ImageEvidence.vectors`` as float32 [measured faces, ``VECTOR_WIDTH``]."""
    return np.frombuffer(vectors, dtype=np.float32).reshape(-1, VECTOR_WIDTH)
