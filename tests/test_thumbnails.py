"""Thumbnails of gate-withheld records: only of a verified, anonymized output, never of anything withheld earlier."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem
from PIL import Image

from tests.fakes import FixedBoxesFactory
from tests.helpers import jpeg_bytes, run_job
from transforms.thumbnails import (
    SIDE,
    gate_withheld,
    make_thumbnail,
    prune_thumbnails,
    thumbnail_allowed,
    thumbnail_name,
)

FACE = (10.0, 10.0, 60.0, 70.0, 0.99)


def _row(index: int, status: str, reason: str = "") -> dict[str, object]:
    return {"shard_id": "images-000000", "shard_index": index, "status": status, "reason": reason}


def test_a_thumbnail_is_small_and_made_from_pixels_only() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker that must not leave"
    pixels = np.random.default_rng(1).integers(0, 256, (600, 900, 3), dtype=np.uint8)
    thumbnail = make_thumbnail(jpeg_bytes(Image.fromarray(pixels), exif=exif.tobytes()))
    assert thumbnail is not None
    with Image.open(io.BytesIO(thumbnail)) as image:
        assert max(image.size) == SIDE and image.size == (SIDE, round(SIDE * 600 / 900))
        assert not image.getexif() and "exif" not in image.info
    assert make_thumbnail(b"not an image") is None


def test_only_a_gate_failure_that_says_nothing_against_the_output_allows_a_thumbnail() -> None:
    assert thumbnail_allowed(["quarantine_share_within_bound"])
    for failed in (["reidentification_at_chance"], ["no_published_metadata"], ["records_accounted_for"],
                   ["quarantine_share_within_bound", "no_published_identity_match"], []):
        assert not thumbnail_allowed(failed), failed
    assert gate_withheld(_row(0, "quarantined", "gate:quarantine_share_within_bound"))
    for row in (_row(0, "quarantined", "gate:quarantine_share_within_bound,reidentification_at_chance"),
                _row(0, "quarantined", "verify:residual_faces"), _row(0, "quarantined", "identity_match"),
                _row(0, "published"), _row(0, "erased", "erasure:x")):
        assert not gate_withheld(row), row


def test_pruning_keeps_only_the_thumbnails_of_gate_withheld_rows(tmp_path: Path) -> None:
    fs, root = LocalFileSystem(), str(tmp_path)
    rows = [_row(0, "quarantined", "gate:quarantine_share_within_bound"),
            _row(1, "quarantined", "verify:residual_faces"), _row(2, "published"),
            _row(3, "quarantined", "gate:reidentification_at_chance")]
    for index in range(5):
        path = tmp_path / "report" / thumbnail_name("images-000000", index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "report" / "withheld" / "stray.jpg").write_bytes(b"x")
    assert prune_thumbnails(fs, root, rows) == {thumbnail_name("images-000000", 0)}
    left = sorted(str(p.relative_to(tmp_path / "report")) for p in (tmp_path / "report").rglob("*") if p.is_file())
    assert left == [thumbnail_name("images-000000", 0)]


def _inputs(folder: Path) -> None:
    """One shard: a.jpg (200 px wide: the verify detector fails on it), b.jpg (240 px wide: passes
    every check of its own) and an undecodable file."""
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name, width in (("a.jpg", 200), ("b.jpg", 240)):
        pixels = rng.integers(0, 256, (120, width, 3), dtype=np.uint8)
        (folder / name).write_bytes(jpeg_bytes(Image.fromarray(pixels)))
    (folder / "c-broken.jpg").write_bytes(bytes(range(256)) * 4)


@pytest.mark.slow
def test_only_the_gate_withheld_record_gets_a_thumbnail_of_its_anonymized_output(tmp_path: Path) -> None:
    """In a shard that fails its gate (2 of 3 quarantined, over 0.4): the record quarantined at
    decode and the one quarantined at verification get no thumbnail; the verified one does, equal to
    the thumbnail of its anonymized output as a passing gate publishes it (not of its original).
    The report shows it in the withheld section; erasing the record removes it."""
    from expectations.report import build_report
    from pipelines.erase import erase

    folder = tmp_path / "in"
    _inputs(folder)
    settings = dict(identity_check=False, shard_size=3)
    detect, verify = FixedBoxesFactory([FACE]), FixedBoxesFactory([], raise_on_width=200)
    withheld = tmp_path / "withheld"
    rows = {r["relative_path"]: r for r in run_job(str(folder), str(withheld), detect, verify,
                                                    gate_max_quarantine_share=0.4, **settings).to_pylist()}
    assert rows["a.jpg"]["reason"] == "verify:detector_error:RuntimeError"
    assert rows["c-broken.jpg"]["reason"] == "decode:undecodable"
    assert rows["b.jpg"]["reason"] == "gate:quarantine_share_within_bound"
    assert not (withheld / "data" / "b.jpg").exists()
    kept = sorted(p for p in (withheld / "report" / "withheld").rglob("*") if p.is_file())
    name = thumbnail_name(rows["b.jpg"]["shard_id"], rows["b.jpg"]["shard_index"])
    assert [str(p.relative_to(withheld / "report")) for p in kept] == [name]

    published = tmp_path / "published"
    rows_ok = {r["relative_path"]: r for r in run_job(str(folder), str(published), detect, verify,
                                                       gate_max_quarantine_share=1.0, **settings).to_pylist()}
    assert rows_ok["b.jpg"]["status"] == "published"
    assert not (published / "report" / "withheld").exists()
    anonymized = (published / "data" / "b.jpg").read_bytes()
    assert kept[0].read_bytes() == make_thumbnail(anonymized)
    assert kept[0].read_bytes() != make_thumbnail((folder / "b.jpg").read_bytes())

    build_report(str(withheld))
    page = (withheld / "report" / "index.html").read_text()
    section = page.split('<h2 id="withheld">')[1].split("<h2>")[0]
    assert section.count('class="withheld-thumbnail"') == 1 and f'src="{name}"' in section
    assert section.count("<td>none</td>") == 2  # a.jpg and c-broken.jpg: no thumbnail

    erase(str(withheld), source_uris=[rows["b.jpg"]["source_uri"]])
    assert not (withheld / "report" / name).exists()
    assert 'class="withheld-thumbnail"' not in (withheld / "report" / "index.html").read_text()
