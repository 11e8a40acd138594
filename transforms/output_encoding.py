"""Encode an anonymized image for publishing, with no metadata: kept, spliced or re-encoded.

Three ways out, each decoded again so that what is published is what the later stages see:

- ``stripped``: a face-less JPEG keeps its compressed data, every metadata segment dropped
  (``strip_jpeg_metadata``), when that decodes to the very pixels the detect stage searched;
- ``spliced``: a JPEG with faces is re-encoded only in the blocks a replaced pixel touches
  (``jpeg_splice.py``), under the same condition, and when the splice's own check passes;
- ``reencoded``: anything else is encoded whole from its pixels (``encode_clean``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from transforms.decode import ImageRejected, load_normalized
from transforms.jpeg_splice import splice_jpeg
from transforms.metadata import encode_clean, jpeg_is_rgb_coded, metadata_fields, strip_jpeg_metadata
from transforms.observability import timed
from transforms.verify_scope import changed_mask

REENCODED = "reencoded"
STRIPPED = "stripped"
SPLICED = "spliced"  # a JPEG whose blocks no replaced pixel touches kept as they were (jpeg_splice.py)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    """Whether two decoded images are the very same pixels (mode, size and every value)."""
    return a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()


@dataclass(frozen=True)
class Encoded:
    """An output's encoded bytes, the metadata names its source carried (all removed), the bytes
    decoded again, how it was encoded (``STRIPPED``, ``SPLICED``, ``REENCODED``), and (H x W
    booleans; None where not computed) where its replaced and its decoded pixels differ from the
    source's."""

    data: bytes
    removed: list[str]
    decoded: Image.Image
    encoding: str
    replaced: np.ndarray | None = None
    differs: np.ndarray | None = None


@dataclass(frozen=True)
class OutputEncoder:
    """Encodes outputs: JPEG ``quality`` for a whole re-encoding; with ``keep_unchanged_jpeg``, a
    JPEG keeps the compressed data no replaced pixel touches (stripped or spliced)."""

    max_pixels: int
    quality: int
    keep_unchanged_jpeg: bool = True

    def stripped_alike(self, source: bytes, image: Image.Image) -> tuple[bytes, Image.Image] | None:
        """The source JPEG without its metadata segments and its decoded pixels, if it is YCbCr or
        greyscale and decodes to ``image``'s very pixels (not when the EXIF orientation, an ICC
        profile or an Adobe colour transform mattered)."""
        if jpeg_is_rgb_coded(source):
            return None
        try:
            stripped = strip_jpeg_metadata(source)
            with Image.open(io.BytesIO(stripped)) as header:
                # Only YCbCr and greyscale, which every decoder reads alike without the APP
                # segments; CMYK/YCCK depend on Adobe's marker, so they are re-encoded as RGB.
                if header.mode not in ("RGB", "L"):
                    return None
            decoded, _ = load_normalized(stripped, self.max_pixels)
        except (ValueError, OSError, ImageRejected):
            return None
        if not same_pixels(decoded, image):
            return None
        return stripped, decoded

    def stripped(self, source: bytes, image: Image.Image, fmt: str) -> Encoded | None:
        """A face-less image's output kept as it is, its metadata dropped (``stripped_alike``);
        None where it must be re-encoded."""
        if not self.keep_unchanged_jpeg or fmt != "JPEG":
            return None
        alike = self.stripped_alike(source, image)
        if alike is None:
            return None
        stripped, decoded = alike
        return Encoded(stripped, metadata_fields(source), decoded, STRIPPED)

    def splice_source(self, source: bytes, image: Image.Image, fmt: str) -> bytes | None:
        """The metadata-free source whose blocks a splice may keep (``stripped_alike``), or None."""
        if not self.keep_unchanged_jpeg or fmt != "JPEG":
            return None
        alike = self.stripped_alike(source, image)
        return alike[0] if alike is not None else None

    def encode(self, source: bytes, image: Image.Image, anonymized: Image.Image, fmt: str,
               splice: bytes | None) -> Encoded:
        """``anonymized`` (``image`` with its faces replaced) encoded: spliced into ``splice`` (the
        ``splice_source``) where it can be and its check passes, else re-encoded whole; decoded again.

        Raises:
            OSError, ValueError: the image cannot be encoded.
            ImageRejected: the encoded bytes do not decode.
        """
        with timed("encode"):
            original = np.asarray(image.convert("RGB"))
            replaced = changed_mask(original, np.asarray(anonymized.convert("RGB")))
            spliced = splice_jpeg(splice, anonymized, replaced, original) \
                if splice is not None and replaced.any() else None
            if spliced is not None:
                # The splice's check decoded its output: those pixels are the output's.
                return Encoded(spliced.data, metadata_fields(source), Image.fromarray(spliced.pixels), SPLICED,
                               replaced, spliced.differs)
            data, removed = encode_clean(anonymized, source, fmt, self.quality)
            decoded, _ = load_normalized(data, self.max_pixels)
            return Encoded(data, removed, decoded, REENCODED, replaced)
