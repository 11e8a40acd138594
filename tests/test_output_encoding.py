"""The replace stage's encoding, alone (transforms/output_encoding.py): kept, spliced or re-encoded,
and what it hands on is what its bytes decode to."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter
from skimage import data as skdata

from tests.helpers import jpeg_bytes
from transforms.decode import load_normalized
from transforms.metadata import remaining_metadata
from transforms.output_encoding import REENCODED, SPLICED, STRIPPED, OutputEncoder, same_pixels

BOX = (40, 40, 140, 150)
ENCODER = OutputEncoder(10**8, 95)


def _source(**kwargs: object) -> tuple[bytes, Image.Image]:
    exif = Image.Exif()
    exif[0x013B] = "Jane Example"  # Artist
    data = jpeg_bytes(Image.fromarray(skdata.astronaut()).resize((320, 240)), exif=exif.tobytes(), **kwargs)
    return data, load_normalized(data, 10**8)[0]


def _blurred(image: Image.Image) -> Image.Image:
    anonymized = image.copy()
    anonymized.paste(anonymized.crop(BOX).filter(ImageFilter.GaussianBlur(6)), BOX[:2])
    return anonymized


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_a_faceless_jpeg_is_kept_without_its_metadata() -> None:
    data, image = _source()
    kept = ENCODER.stripped(data, image, "JPEG")
    assert kept is not None and kept.encoding == STRIPPED
    assert "Artist" in " ".join(kept.removed) and remaining_metadata(kept.data) == []
    assert same_pixels(kept.decoded, image) and np.array_equal(_decoded(kept.data), np.asarray(image))
    # Not for another format, nor when the option is off.
    assert ENCODER.stripped(data, image, "PNG") is None
    assert OutputEncoder(10**8, 95, keep_unchanged_jpeg=False).stripped(data, image, "JPEG") is None


def test_a_jpeg_with_a_replaced_face_is_spliced_and_hands_on_its_decoded_pixels() -> None:
    data, image = _source()
    anonymized = _blurred(image)
    splice = ENCODER.splice_source(data, image, "JPEG")
    assert splice is not None and remaining_metadata(splice) == []
    out = ENCODER.encode(data, image, anonymized, "JPEG", splice)
    assert out.encoding == SPLICED and remaining_metadata(out.data) == []
    decoded = _decoded(out.data)
    # What it hands on is what the bytes decode to, with where they and the replacement differ.
    assert np.array_equal(np.asarray(out.decoded), decoded)
    original = np.asarray(image)
    assert out.differs is not None and np.array_equal(out.differs, np.any(decoded != original, axis=-1))
    assert out.replaced is not None and np.array_equal(out.replaced,
                                                       np.any(np.asarray(anonymized) != original, axis=-1))
    # Away from the face the output is the source's very pixels.
    x1, y1, x2, y2 = BOX
    assert not out.differs[:, x2 + 32:].any() and not out.differs[y2 + 32:].any()


def test_without_a_splice_source_the_output_is_reencoded_whole() -> None:
    data, image = _source()
    anonymized = _blurred(image)
    out = ENCODER.encode(data, image, anonymized, "JPEG", None)
    assert out.encoding == REENCODED and out.differs is None and remaining_metadata(out.data) == []
    assert np.array_equal(np.asarray(out.decoded), _decoded(out.data))
    # An EXIF-rotated JPEG decodes upright only with its metadata: it is never kept or spliced.
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90
    rotated = jpeg_bytes(Image.fromarray(skdata.astronaut()).resize((320, 240)), exif=exif.tobytes())
    upright = load_normalized(rotated, 10**8)[0]
    assert ENCODER.stripped_alike(rotated, upright) is None and ENCODER.splice_source(rotated, upright, "JPEG") is None
