"""The shard's rank-1 re-identification test: the binomial tail, and hits on known vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transforms.identity import CHECKED
from transforms.identity_evidence import SAME_FACE_DISTANCE, VECTOR_WIDTH, impostors_of
from transforms.records import Record
from transforms.reidentification import binomial_p_value, shard_reidentification, with_reidentification


def test_binomial_tail_matches_the_direct_sum() -> None:
    for hits, trials, chance in ((0, 10, 0.1), (3, 10, 0.1), (10, 10, 0.5), (7, 40, 0.025), (1, 1, 0.3)):
        direct = sum(math.comb(trials, x) * chance**x * (1 - chance) ** (trials - x) for x in range(hits, trials + 1))
        assert binomial_p_value(hits, trials, chance) == pytest.approx(direct, rel=1e-9, abs=1e-300)
    assert binomial_p_value(5, 5, 1.0) == 1.0  # one original in the gallery: every probe is a hit by chance
    with pytest.raises(ValueError, match="hits"):
        binomial_p_value(4, 3, 0.5)


def _record(index: int, originals: np.ndarray, probes: np.ndarray, impostor: float = math.inf) -> Record:
    rows = [np.concatenate([o, p, p, [impostor]]) for o, p in zip(originals, probes, strict=True)]
    vectors = np.asarray(rows, dtype=np.float32)
    assert vectors.shape[1] == VECTOR_WIDTH
    return Record("s", index, f"r{index}", "u", f"{index}.jpg", "", b"x", identity_check=CHECKED,
                  identity_vectors=vectors.tobytes())


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, 128))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * 0.6


def test_probes_that_keep_their_identity_fail_the_test_and_random_ones_pass() -> None:
    rng = np.random.default_rng(0)
    originals = _unit(rng, 30)
    # Barely changed replacements: each is nearest its own original, far above chance (1/30).
    kept = [_record(i, originals[i:i + 1], originals[i:i + 1] + 0.01 * _unit(rng, 1)) for i in range(30)]
    test = shard_reidentification(kept)
    assert test.gallery == 30 and sum(test.hits.values()) == 30 and test.p_value < 1e-30
    # Replacements that carry nothing of their original: hits at chance, the test passes.
    lost = [_record(i, originals[i:i + 1], _unit(rng, 1)) for i in range(30)]
    test = shard_reidentification(lost)
    assert sum(test.hits.values()) <= 3 and test.p_value > 0.01
    # An impostor nearer than every original takes the hit away.
    shielded = [_record(i, originals[i:i + 1], originals[i:i + 1] + 0.01 * _unit(rng, 1), impostor=1e-6)
                for i in range(30)]
    assert sum(shard_reidentification(shielded).hits.values()) == 0


def test_quarantined_records_are_no_probes_and_vectors_never_leave() -> None:
    rng = np.random.default_rng(1)
    originals = _unit(rng, 3)
    records = [_record(0, originals[:2], originals[:2]), _record(1, originals[2:], originals[2:]).quarantine("x")]
    assert records[1].identity_vectors == b""  # a quarantined record drops them at once
    out = with_reidentification(records)
    assert all(r.identity_vectors == b"" for r in out)
    assert (out[0].identity_rank1_hits, out[0].identity_rank1_probes, out[0].identity_rank1_gallery) == (2, 2, 2)
    assert out[0].reid_p_value == pytest.approx(0.25)  # chance is 1/2 per probe; 2 of 2 hits


def test_a_gallery_face_that_is_the_original_itself_is_no_impostor_for_it() -> None:
    """The gallery's cameraman measured against the cameraman of a dataset: the same face (distance 0)
    would make every replacement of it tie with an "impostor"; it is dropped for that face only."""
    rng = np.random.default_rng(0)
    original = rng.normal(size=128).astype(np.float32)
    original /= np.linalg.norm(original)
    other = rng.normal(size=128).astype(np.float32)
    other *= 0.7 / np.linalg.norm(other)  # another person: 0.7 from the original
    gallery = np.stack([original, original + SAME_FACE_DISTANCE / 2 / math.sqrt(128), original + other])
    kept = impostors_of(gallery, original)
    assert kept.shape == (1, 128) and np.allclose(kept[0], original + other)
    assert impostors_of(gallery, original + other).shape == (2, 128)
    assert impostors_of(np.zeros((0, 128), np.float32), original).shape == (0, 128)
