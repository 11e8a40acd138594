"""The shard's rank-1 re-identification test: could an attacker holding the originals pick out
the anonymized faces?

Every measured face of a shard (``identity_evidence``) is a probe: its replacement is compared with
the originals of all measured faces of the shard that may be published, plus the fixed impostor
gallery. A probe is a rank-1 hit when its own original is (one of) the nearest. Under the null
hypothesis that anonymization left nothing of the identity, a probe's own original is no more
likely to be the nearest than any other of the shard's ``n`` originals, so a hit has probability at
most ``1/n`` (impostors can only take hits away). The test is the exact one-sided binomial test of
the hits among the probes against ``1/n``; the shard gate fails when its p-value is under
``identity_reid_alpha``. A shard with a single measured face has chance 1, so it cannot fail the
test: its face is judged by ``matched`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transforms.identity import CHECKED, gallery_distances
from transforms.identity_evidence import unpack_vectors
from transforms.records import Record


@dataclass(frozen=True)
class ShardReidentification:
    """The test's outcome: hits per record id, probes, the gallery size and the p-value."""

    hits: dict[str, int]
    probes: dict[str, int]
    gallery: int
    p_value: float

    @property
    def trials(self) -> int:
        return sum(self.probes.values())

    @property
    def chance(self) -> float:
        return 1.0 / self.gallery if self.gallery else math.nan


def binomial_p_value(hits: int, trials: int, chance: float) -> float:
    """One-sided exact binomial test: P(X >= ``hits``) for X ~ Binomial(``trials``, ``chance``)."""
    if not 0 <= hits <= trials or not 0.0 <= chance <= 1.0:
        raise ValueError(f"binomial_p_value: need 0 <= hits <= trials and chance in [0, 1], "
                         f"got {hits}, {trials}, {chance}")
    if hits == 0 or chance >= 1.0:
        return 1.0
    if chance <= 0.0:
        return 0.0
    log_p, log_q = math.log(chance), math.log1p(-chance)
    terms = [math.lgamma(trials + 1) - math.lgamma(x + 1) - math.lgamma(trials - x + 1) + x * log_p
             + (trials - x) * log_q for x in range(hits, trials + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def shard_reidentification(records: Sequence[Record]) -> ShardReidentification:
    """Rank-1 hits of the measured faces of ``records`` that are not quarantined or excluded."""
    owners: list[str] = []
    rows: list[np.ndarray] = []
    for record in records:
        if record.is_quarantined or record.is_excluded or not record.identity_vectors:
            continue
        for row in unpack_vectors(record.identity_vectors):
            owners.append(record.record_id)
            rows.append(row)
    hits = {record_id: 0 for record_id in owners}
    probes = {record_id: 0 for record_id in owners}
    if not rows:
        return ShardReidentification({}, {}, 0, 1.0)
    table = np.stack(rows)
    originals = table[:, :128]
    for j, row in enumerate(table):
        distances = gallery_distances(row[128:384].reshape(2, 128), originals)
        own = distances[j]
        others = np.delete(distances, j)
        nearest_other = min(float(others.min()) if len(others) else math.inf, float(row[384]))
        probes[owners[j]] += 1
        hits[owners[j]] += int(own <= nearest_other)
    gallery = len(rows)
    return ShardReidentification(hits, probes, gallery, binomial_p_value(sum(hits.values()), gallery, 1.0 / gallery))


def with_reidentification(records: Sequence[Record]) -> list[Record]:
    """``records`` with the shard test's figures set on each (``identity_rank1_*``, ``reid_p_value``)
    and the identity vectors dropped (they never leave the pipeline)."""
    test = shard_reidentification(records)
    return [record.replace(identity_vectors=b"", identity_rank1_hits=test.hits.get(record.record_id, 0),
                           identity_rank1_probes=test.probes.get(record.record_id, 0),
                           identity_rank1_gallery=test.gallery, reid_p_value=test.p_value)
            if record.identity_check == CHECKED else record for record in records]
