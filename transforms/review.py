"""Human review of a run's output: the random audit sample, the borderline queue, the verdicts and
the upper bound on missed faces they give (``anonymize review``, pipelines/review.py).

Everything a review does is an entry of the output's hash-chained audit log (transforms/audit.py):

- ``review_sample``: a random audit sample, drawn with a recorded seed over the published images
  (with and without detected faces) at the time; its size from a target confidence and margin.
- ``review_opened``: a review server was started on a sample (and whether originals may be shown).
- ``review_verdict``: one reviewer's verdict on one image: ``ok``, ``missed_face`` (with the boxes
  drawn; the record is quarantined as ``review:missed_face``) or ``not_a_face`` (a replaced region).
- ``review_original_shown``: an original was shown on screen, by an explicit choice.
- ``review_signoff``: a reviewer signed a shard off.

The bound is the exact one-sided Clopper-Pearson upper limit on the share of published images with
a missed face, from the images of the random sample that got a verdict: with ``k`` misses in
``n`` images it is the ``p`` where ``P(X <= k | n, p) = 1 - confidence``; ``k = 0`` still gives
``1 - (1 - confidence) ** (1 / n)``. Only the random sample counts: the borderline queue is chosen,
not random, so its images say nothing about the rest.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MISSED_FACE_REASON = "review:missed_face"
OK, MISSED, NOT_A_FACE = "ok", "missed_face", "not_a_face"
IMAGE_VERDICTS = (OK, MISSED)  # a verdict on the whole image: it counts as reviewed
VERDICTS = (OK, MISSED, NOT_A_FACE)
SAMPLE, OPENED, VERDICT, ORIGINAL_SHOWN, SIGNOFF = (
    "review_sample", "review_opened", "review_verdict", "review_original_shown", "review_signoff")
REVIEWED, NOT_REVIEWED = "REVIEWED", "NOT REVIEWED"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MARGIN = 0.05
# Borderline: a detection score this close above detector_score_threshold, or a face re-detected on
# the output with a score this close under verify_score_threshold.
NEAR_THRESHOLD = 0.1
# Identity statuses the steward should see (transforms/identity.py FaceStatus values).
STATUSES_TO_SEE = {
    "matched": "a replaced face still measured as matching its original",
    "unmeasurable_no_face": "a replaced face the identity model could not read (no measurement)",
    "unmeasurable_small": "a replaced face too small to measure",
}


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"review: confidence must be between 0 and 1 (exclusive), got {confidence}")


def sample_size(confidence: float = DEFAULT_CONFIDENCE, margin: float = DEFAULT_MARGIN) -> int:
    """The smallest sample in which zero misses bound the missed share under ``margin`` at
    ``confidence``: ``ceil(ln(1 - confidence) / ln(1 - margin))`` (59 for 95% and 5%).

    Raises:
        ValueError: confidence or margin not strictly between 0 and 1.
    """
    _check_confidence(confidence)
    if not 0.0 < margin < 1.0:
        raise ValueError(f"review: margin must be between 0 and 1 (exclusive), got {margin}")
    n = math.ceil(math.log(1.0 - confidence) / math.log(1.0 - margin))
    # Guard the float rounding at the boundary: the bound of n zero-miss images must be <= margin.
    while n > 1 and upper_bound(0, n - 1, confidence) <= margin:
        n -= 1
    while upper_bound(0, n, confidence) > margin:
        n += 1
    return n


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed in log space (exact enough for any n)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def upper_bound(misses: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Exact one-sided Clopper-Pearson upper bound on a share, from ``misses`` in ``n`` images.

    1.0 when ``n`` is 0 (nothing reviewed bounds nothing) or every image was a miss.

    Raises:
        ValueError: counts out of range or confidence not strictly between 0 and 1.
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= misses <= n:
        raise ValueError(f"review: need 0 <= misses <= n, got {misses} of {n}")
    if n == 0 or misses == n:
        return 1.0
    alpha = 1.0 - confidence
    if misses == 0:
        return 1.0 - alpha ** (1.0 / n)
    low, high = misses / n, 1.0
    for _ in range(200):  # bisection: the CDF falls as p grows
        mid = (low + high) / 2
        if _binomial_cdf(misses, n, mid) > alpha:
            low = mid
        else:
            high = mid
        if high - low < 1e-12:
            break
    return high


def population_sha256(record_ids: Iterable[str]) -> str:
    """A fingerprint of the population a sample was drawn from (sorted record ids)."""
    return hashlib.sha256("\n".join(sorted(record_ids)).encode()).hexdigest()


def draw_sample(record_ids: Iterable[str], size: int, seed: int) -> list[str]:
    """A simple random sample without replacement of ``size`` record ids (all if fewer), in draw
    order; the same ids and seed always give the same sample."""
    population = sorted(set(record_ids))
    return random.Random(seed).sample(population, min(size, len(population)))


def published_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The published rows with an output, in shard order."""
    return sorted((r for r in rows if r["status"] == "published" and r.get("output_uri")),
                  key=lambda r: (r["shard_id"], r["shard_index"]))


def borderline_reasons(row: Mapping[str, Any], low_score: float, score_threshold: float | None,
                       verify_threshold: float | None) -> list[str]:
    """Why a published row is worth a look: low-score detections, scores near a threshold, the
    identity statuses a steward should see. Empty when nothing stands out."""
    reasons: list[str] = []
    scores = [float(f["score"]) for f in row.get("faces") or [] if f.get("score") is not None]
    low = [s for s in scores if s < low_score]
    if low:
        reasons.append(f"{len(low)} detection(s) scored under {low_score:g} (lowest {min(low):.2f})")
    if score_threshold is not None:
        near = [s for s in scores if score_threshold <= s < score_threshold + NEAR_THRESHOLD]
        if near:
            reasons.append(f"{len(near)} detection(s) within {NEAR_THRESHOLD:g} above detector_score_threshold "
                           f"{score_threshold:g}")
    if verify_threshold is not None:
        redetected = [float(s) for s in row.get("face_redetected_scores") or []
                      if s is not None and verify_threshold - NEAR_THRESHOLD <= float(s) < verify_threshold]
        if redetected:
            reasons.append(f"{len(redetected)} replaced face(s) re-detected on the output just under "
                           f"verify_score_threshold {verify_threshold:g} (highest {max(redetected):.2f})")
    statuses = [s for s in row.get("face_identity_statuses") or [] if s in STATUSES_TO_SEE]
    for status in sorted(set(statuses)):
        reasons.append(f"{statuses.count(status)} x {STATUSES_TO_SEE[status]} ({status})")
    return reasons


@dataclass
class ReviewRecord:
    """What the log says of one sample: who reviewed which record how, and the sign-offs."""

    review_id: str
    seed: int
    confidence: float
    margin: float
    target_size: int
    population: int
    sample: list[str]
    sample_shards: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # record id -> its image verdict
    annotations: list[dict[str, Any]] = field(default_factory=list)  # not_a_face marks
    signoffs: dict[str, dict[str, Any]] = field(default_factory=dict)  # shard id -> the sign-off
    originals_shown: int = 0

    def sample_counts(self) -> tuple[int, int]:
        """(images of the random sample with a verdict, of them marked as missing a face)."""
        judged = [self.verdicts[r] for r in self.sample if r in self.verdicts]
        return len(judged), sum(1 for v in judged if v["verdict"] == MISSED)

    def bound(self) -> float:
        n, k = self.sample_counts()
        return upper_bound(k, n, self.confidence)


def apply_verdict(verdicts: dict[str, dict[str, Any]], entry: Mapping[str, Any]) -> None:
    """Fold one image verdict in: the latest counts, but a miss stands (its record is withdrawn)."""
    record_id = str(entry["record_id"])
    if verdicts.get(record_id, {}).get("verdict") == MISSED:
        return
    verdicts[record_id] = dict(entry)


def review_records(entries: Sequence[Mapping[str, Any]]) -> list[ReviewRecord]:
    """Every sample of the log, oldest first, with what was recorded against it."""
    records: dict[str, ReviewRecord] = {}
    for entry in entries:
        kind, review_id = entry.get("kind"), str(entry.get("review_id") or "")
        if kind == SAMPLE:
            records[review_id] = ReviewRecord(
                review_id, int(entry["seed"]), float(entry["confidence"]), float(entry["margin"]),
                int(entry["target_size"]), int(entry["population"]), list(entry["sample"]),
                dict(entry.get("sample_shards") or {}))
            continue
        record = records.get(review_id)
        if record is None:
            continue
        if kind == VERDICT and entry.get("verdict") in IMAGE_VERDICTS:
            apply_verdict(record.verdicts, entry)
        elif kind == VERDICT and entry.get("verdict") == NOT_A_FACE:
            record.annotations.append(dict(entry))
        elif kind == SIGNOFF:
            record.signoffs[str(entry["shard_id"])] = dict(entry)
        elif kind == ORIGINAL_SHOWN:
            record.originals_shown += 1
    return list(records.values())


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def review_summary(entries: Sequence[Mapping[str, Any]], shard_ids: Iterable[str]) -> dict[str, Any]:
    """The report's "Human review" figures: the latest sample's reviewed images, misses and bound,
    every image reviewed by anyone, and per shard whether it was signed off."""
    records = review_records(entries)
    verdict_entries = [e for e in entries if e.get("kind") == VERDICT and e.get("verdict") in IMAGE_VERDICTS]
    all_verdicts: dict[str, dict[str, Any]] = {}
    for entry in verdict_entries:
        apply_verdict(all_verdicts, entry)
    shards = sorted(set(shard_ids))
    if not records:
        return {"reviewed": False, "verdict": NOT_REVIEWED, "images_reviewed": len(all_verdicts),
                "misses_found": sum(1 for v in all_verdicts.values() if v["verdict"] == MISSED),
                "text": "no human review of this output has been recorded (anonymize review)",
                "shards": [{"shard_id": s, "sampled": 0, "reviewed": 0, "misses": 0, "signed_off": None}
                           for s in shards]}
    latest = records[-1]
    n, k = latest.sample_counts()
    bound = latest.bound()
    per_shard = []
    for shard_id in sorted(set(shards) | set(latest.sample_shards.values())):
        sampled = [r for r in latest.sample if latest.sample_shards.get(r) == shard_id]
        judged = [latest.verdicts[r] for r in sampled if r in latest.verdicts]
        signoff = latest.signoffs.get(shard_id)
        signed = {"by": signoff.get("reviewer"), "at": signoff.get("time")} if signoff else None
        per_shard.append({"shard_id": shard_id, "sampled": len(sampled), "reviewed": len(judged),
                          "misses": sum(1 for v in judged if v["verdict"] == MISSED), "signed_off": signed})
    reviewed = n > 0
    if reviewed:
        text = (f"{n} of the {len(latest.sample)} images of the random audit sample reviewed, {k} with a missed "
                f"face: at {_percent(latest.confidence)} confidence at most {_percent(bound)} of the published "
                "images have a missed face (one-sided exact Clopper-Pearson bound)")
    else:
        text = (f"a random audit sample of {len(latest.sample)} images was drawn but none of it has been "
                "reviewed yet")
    return {
        "reviewed": reviewed, "verdict": REVIEWED if reviewed else NOT_REVIEWED, "text": text,
        "review_id": latest.review_id, "seed": latest.seed, "confidence": latest.confidence,
        "margin": latest.margin, "population": latest.population, "sample_size": len(latest.sample),
        "sample_reviewed": n, "sample_misses": k, "upper_bound": bound,
        "images_reviewed": len(all_verdicts),
        "misses_found": sum(1 for v in all_verdicts.values() if v["verdict"] == MISSED),
        "not_a_face_marks": sum(len(r.annotations) for r in records),
        "originals_shown": sum(r.originals_shown for r in records),
        "reviewers": sorted({str(e.get("reviewer")) for e in verdict_entries if e.get("reviewer")}),
        "shards": per_shard,
    }
