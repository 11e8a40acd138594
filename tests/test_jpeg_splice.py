"""Re-encoding only the JPEG blocks a replacement touched (transforms/jpeg_splice.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data as skdata

from transforms.jpeg_splice import _faithful, changed_mcus, source_pixels, splice_jpeg
from transforms.metadata import remaining_metadata

BOX = (37, 41, 140, 150)


def _jpeg(mode: str, size: tuple[int, int], subsampling: int | None, exif: bytes = b"") -> bytes:
    image = Image.fromarray(skdata.astronaut()).resize(size).convert(mode)
    buffer = io.BytesIO()
    options: dict[str, object] = {} if subsampling is None else {"subsampling": subsampling}
    if exif:
        options["exif"] = exif
    image.save(buffer, "JPEG", quality=80, **options)
    return buffer.getvalue()


def _blurred(source: bytes) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """The source decoded with BOX blurred, the change mask, and the source's RGB pixels."""
    decoded = Image.open(io.BytesIO(source))
    decoded.load()
    anonymized = decoded.copy()
    anonymized.paste(anonymized.crop(BOX).filter(ImageFilter.GaussianBlur(6)), BOX[:2])
    original = np.asarray(decoded.convert("RGB"))
    return anonymized, np.any(original != np.asarray(anonymized.convert("RGB")), axis=-1), original


@pytest.mark.parametrize(("mode", "size", "subsampling"), [
    ("RGB", (512, 512), 2), ("RGB", (501, 377), 1), ("RGB", (333, 250), 0), ("L", (300, 211), None)])
def test_only_the_changed_blocks_differ_and_they_hold_the_replacement(
        mode: str, size: tuple[int, int], subsampling: int | None) -> None:
    """4:2:0, 4:2:2, 4:4:4 and greyscale, odd sizes: pixels farther than one 16 px block from the
    change are the source's very pixels; inside the change they are the replacement's, up to its
    own encoding; and the face's pixels are gone."""
    source = _jpeg(mode, size, subsampling)
    anonymized, changed, original = _blurred(source)
    result = splice_jpeg(source, anonymized, changed, original)
    assert result is not None
    out = source_pixels(result.data).astype(np.int16)
    # What it returns is its output as decoded, and where that differs from the source.
    assert np.array_equal(result.pixels, out) and np.array_equal(result.differs, np.any(out != original, axis=-1))
    far = np.ones(changed.shape, bool)
    far[BOX[1] - 32: BOX[3] + 32, BOX[0] - 32: BOX[2] + 32] = False
    assert np.array_equal(out[far], original[far])
    x1, y1, x2, y2 = BOX
    replacement = np.asarray(anonymized.convert("RGB")).astype(np.int16)[y1:y2, x1:x2]
    assert np.abs(out[y1:y2, x1:x2] - replacement).mean() < 2.0
    assert np.abs(out[y1:y2, x1:x2] - original[y1:y2, x1:x2]).mean() > 5.0


def test_the_spliced_output_carries_no_metadata() -> None:
    exif = Image.Exif()
    exif[0x013B] = "Jane Example"  # Artist
    source = _jpeg("RGB", (320, 240), 2, exif=exif.tobytes())
    assert remaining_metadata(source)
    anonymized, changed, original = _blurred(source)
    result = splice_jpeg(source, anonymized, changed, original)
    assert result is not None and b"Jane" not in result.data
    assert remaining_metadata(result.data) == []


def test_a_misplaced_block_fails_the_check() -> None:
    """The check reads the decoded output: a crop that is not what the changed blocks hold (here,
    the source's own pixels where the blur should be) fails it, and so does a change elsewhere."""
    source = _jpeg("RGB", (320, 240), 2)
    anonymized, changed, original = _blurred(source)
    result = splice_jpeg(source, anonymized, changed, original)
    assert result is not None
    spliced = result.data
    mcus = changed_mcus(changed, 16, 16)
    rows, cols = np.nonzero(mcus)
    box = (int(cols.min()) * 16, int(rows.min()) * 16, (int(cols.max()) + 1) * 16, (int(rows.max()) + 1) * 16)
    crop = source_pixels(spliced)[box[1]:box[3], box[0]:box[2]]
    assert _faithful(spliced, original, crop, box, mcus, 16, 16) is not None
    assert _faithful(spliced, original, original[box[1]:box[3], box[0]:box[2]], box, mcus, 16, 16) is None
    moved = original.copy()
    moved[200:210, 300:310] = 0  # the "source" differs far from the change: the output cannot match it
    assert _faithful(spliced, moved, crop, box, mcus, 16, 16) is None


def test_what_cannot_be_spliced_is_left_to_a_whole_reencoding() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (64, 48), (10, 200, 30, 40)).save(buffer, "JPEG")
    cmyk = Image.open(io.BytesIO(buffer.getvalue()))
    changed = np.zeros((48, 64), bool)
    changed[5:9, 5:9] = True
    assert splice_jpeg(buffer.getvalue(), cmyk, changed, np.asarray(cmyk.convert("RGB"))) is None
    source = _jpeg("RGB", (320, 240), 2)
    anonymized, changed, original = _blurred(source)
    assert splice_jpeg(source, anonymized.resize((300, 240)), changed, original) is None
    assert splice_jpeg(source, anonymized, np.zeros_like(changed), original) is None  # nothing changed
