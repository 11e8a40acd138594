"""Anonymize one image under the identity evidence: replace, encode, measure, escalate what matched.

``Anonymizer.anonymize`` is the replace stage's work on one image, without Beam: each face is
screened once (``screen_faces``: solid, too small, or no face for the embedding model in the
original) and each measurable original measured once; the faces are replaced (``replace_faces``),
the output encoded (``output_encoding.py``) and decoded, and the evidence taken on the decoded
output (``measure_image``). A ``matched`` face is escalated (``escalated_policy``: a stronger
blur, then a solid fill) and the image rendered again; the evidence returned is the final one's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from transforms.identity import IdentityEmbedder, Reference
from transforms.identity_evidence import IdentityPolicy, ImageEvidence, measure_image, screen_faces
from transforms.observability import timed
from transforms.output_encoding import Encoded, OutputEncoder
from transforms.records import Face
from transforms.replacement import (
    ESCALATION_LEVELS,
    ReplacementPolicy,
    attempt_seed,
    choose_synthetic_attempts,
    escalated_policy,
    replace_faces,
)
from transforms.synthesis import FaceGenerator


@dataclass(frozen=True)
class Rendering:
    """One anonymized version of an image: its pixels, its encoding (``Encoded``), each face's
    escalation level (``escalated_policy``), the faces' identity evidence (None when not taken), and
    per face whether its identity was measurable."""

    anonymized: Image.Image
    output: Encoded
    escalations: tuple[int, ...] = ()
    evidence: ImageEvidence | None = None
    measurable: tuple[bool, ...] = ()

    @property
    def distances(self) -> tuple[float, ...]:
        return self.evidence.distances if self.evidence is not None else ()

    @property
    def encoding(self) -> str:
        return self.output.encoding


@dataclass
class Anonymizer:
    """Replaces the faces of one image under ``policy`` and encodes it (``encoder``); with an
    ``embedder``, takes identity evidence under ``identity`` and escalates matched faces; with a
    ``generator``, substitutes synthetic faces."""

    policy: ReplacementPolicy
    identity: IdentityPolicy
    encoder: OutputEncoder
    embedder: IdentityEmbedder | None = None
    generator: FaceGenerator | None = None

    def anonymize(self, key: str, source: bytes, image: Image.Image, fmt: str,
                  faces: tuple[Face, ...]) -> Rendering:
        """``image`` (decoded from ``source``, of format ``fmt``) with ``faces`` replaced, encoded
        and its evidence taken; ``key`` (the source's SHA-256) seeds the synthetic substitutes.

        For ``synthetic``, only a measurable face is substituted (a re-detected substitute is
        excused only by a measured distance; the others are blurred), and it gets the farthest of up
        to ``synthetic_attempts`` seeded substitutes (``choose_synthetic_attempts``: only distances
        to the original decide, never its pixels).
        """
        if not faces:
            kept = self.encoder.stripped(source, image, fmt)
            if kept is not None:
                return Rendering(image, kept)
        # A JPEG with faces keeps the coded blocks no replaced pixel touches, where its pixels need
        # no transform (the same condition as a face-less JPEG kept as it is).
        splice = self.encoder.splice_source(source, image, fmt) if faces else None
        references: dict[int, Reference] = {}
        screened: list[str | None] = [None] * len(faces)
        attempts = [0] * len(faces)
        if self.embedder is not None and faces:
            with timed("identity"):
                original = np.asarray(image.convert("RGB"))
                screened = screen_faces(self.embedder, original, faces, self.identity, self.policy.method == "solid")
                readable = [i for i, status in enumerate(screened) if status is None]
                references = dict(zip(readable, self.embedder.references(original, [faces[i] for i in readable]),
                                      strict=True))
            if self.policy.method == "synthetic" and self.generator is not None:
                with timed("synthetic_search"):
                    attempts = choose_synthetic_attempts(original, faces, references, self.policy, self.generator,
                                                         self.embedder, key)
        levels = [0] * len(faces)
        measurable = tuple(self.embedder is not None and status is None for status in screened)
        rendering = self._render(key, source, image, fmt, faces, attempts, levels, references, screened,
                                 measurable, splice)
        if not self.identity.escalate or rendering.evidence is None:
            return rendering
        for level in ESCALATION_LEVELS:
            matching = rendering.evidence.matched
            if not matching:
                break
            for i in matching:
                levels[i] = level
            rendering = self._render(key, source, image, fmt, faces, attempts, levels, references, screened,
                                     measurable, splice)
        return rendering

    def _render(self, key: str, source: bytes, image: Image.Image, fmt: str, faces: tuple[Face, ...],
                attempts: list[int], levels: list[int], references: Mapping[int, Reference],
                screened: Sequence[str | None], measurable: tuple[bool, ...], splice: bytes | None) -> Rendering:
        """One replacement of every face (face i with its ``attempts[i]``-th seed, or escalated to
        ``levels[i]``; substituted only where ``measurable[i]``), encoded (spliced into ``splice``
        where it can be), decoded, and its identity evidence taken (when the check is on)."""
        seeds = [attempt_seed(self.policy, key, i, t) for i, t in enumerate(attempts)]
        plain = [i for i, level in enumerate(levels) if level == 0]
        with timed("replace"):
            anonymized = replace_faces(image, [faces[i] for i in plain], self.policy, self.generator,
                                       [seeds[i] for i in plain], [measurable[i] for i in plain])
            for level in ESCALATION_LEVELS:
                chosen = [face for face, face_level in zip(faces, levels, strict=True) if face_level == level]
                if chosen:
                    anonymized = replace_faces(anonymized, chosen, escalated_policy(self.policy, level))
        output = self.encoder.encode(source, image, anonymized, fmt, splice)
        evidence = None
        if self.embedder is not None and faces:
            solid = [level == ESCALATION_LEVELS[-1] for level in levels]
            with timed("identity"):
                evidence = measure_image(self.embedder, references, np.asarray(output.decoded.convert("RGB")),
                                         screened, solid, self.identity)
        return Rendering(anonymized, output, tuple(levels), evidence, measurable)
