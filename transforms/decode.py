"""Decode + normalise: orientation baked into pixels, colour to sRGB, odd modes made sensible.

Stages pass encoded bytes; each stage that needs pixels calls ``load_normalized`` on them.
Anything that cannot be decoded safely raises ``ImageRejected`` with a short reason code.
"""

from __future__ import annotations

import io
import posixpath
import warnings
from collections.abc import Iterator

import apache_beam as beam
from PIL import Image, ImageCms, ImageOps

from transforms.failures import quarantine_failures
from transforms.io_images import IMAGE_EXTENSIONS
from transforms.observability import timed
from transforms.records import Record

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
# The file-name extensions of each supported format; outputs keep the input's name, so a file whose
# extension names another image format (a JPEG named .heic) is quarantined, not published misnamed.
FORMAT_EXTENSIONS = {"JPEG": frozenset({".jpg", ".jpeg", ".jpe"}), "PNG": frozenset({".png"}),
                     "WEBP": frozenset({".webp"})}
_SRGB = ImageCms.createProfile("sRGB")


class ImageRejected(Exception):
    """An image that cannot be processed; ``reason`` goes into the manifest."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return image  # an unreadable profile: treat the pixels as sRGB
    if image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=output_mode)
    except ImageCms.PyCMSError:
        return image
    return converted if converted is not None else image


def _normalise_mode(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit or 32-bit grey: scale the full range to 8 bits rather than clipping.
        extrema = image.getextrema()
        lo, hi = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
        scale = 255.0 / max(1.0, hi - lo)
        return image.point(lambda v: (v - lo) * scale).convert("L").convert("RGB")
    if image.mode == "F":
        return image.convert("L").convert("RGB")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA", "RGBa", "La"):
        return image.convert("RGBA")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _primary_jpeg(image: Image.Image) -> Image.Image:
    """The first image of a multi-picture (MPO) file, as a plain single-frame JPEG image."""
    image.seek(0)
    image.load()
    primary = image.copy()  # its own copy of ``info``
    primary.info.pop("mp", None)
    return primary


def load_normalized(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Decode image bytes into an upright RGB or RGBA image in sRGB.

    Returns:
        The image and the source format name (``JPEG``, ``PNG``, ...).

    Raises:
        ImageRejected: empty, undecodable, truncated, unsupported or too large input.
    """
    if not data:
        raise ImageRejected("empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            fmt = image.format or ""
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected("too_many_pixels", f"{width}x{height} > {max_pixels}")
            if fmt == "MPO":
                # A JPEG with more images after its own (MPF: Ultra HDR and iPhone gain maps, depth
                # maps, a stereo pair's second view): the first is the photo; only it is read, and
                # outputs are encoded from it alone, so the others never reach the output.
                fmt = "JPEG"
                image = _primary_jpeg(image)
            if fmt not in SUPPORTED_FORMATS:
                raise ImageRejected("unsupported_format", fmt or "unknown")
            frames = int(getattr(image, "n_frames", 1))
            if frames > 1:
                raise ImageRejected("multi_frame_image", f"{frames} frames")
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected("too_many_pixels", str(error)) from None
    except Image.UnidentifiedImageError:
        raise ImageRejected("undecodable", "not a recognised image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = "truncated" if "truncated" in str(error).lower() else "undecodable"
        raise ImageRejected(reason, str(error)) from None
    try:
        image = _to_srgb(image)
        upright = ImageOps.exif_transpose(image)
        image = upright if upright is not None else image
        image = _normalise_mode(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageRejected("undecodable", str(error)) from None
    return image, fmt


class DecodeAndNormalise(beam.DoFn):
    """Check that each record decodes safely; record its upright size and format.

    Records that fail are quarantined with the reason; nothing decoded is passed on.
    """

    def __init__(self, max_pixels: int, min_side: int) -> None:
        if max_pixels < 1 or min_side < 1:
            raise ValueError(f"max_pixels and min_side must be >= 1, got {max_pixels}, {min_side}")
        self._max_pixels = max_pixels
        self._min_side = min_side

    @quarantine_failures("decode")
    def process(self, record: Record) -> Iterator[Record]:
        if record.is_quarantined:
            yield record
            return
        try:
            with timed("decode"):
                image, fmt = load_normalized(record.data, self._max_pixels)
        except ImageRejected as rejected:
            yield record.quarantine(f"decode:{rejected.reason}")
            return
        width, height = image.size
        if min(width, height) < self._min_side:
            yield record.replace(width=width, height=height).quarantine("decode:too_small")
            return
        extension = posixpath.splitext(record.relative_path)[1].lower()
        if extension in IMAGE_EXTENSIONS and extension not in FORMAT_EXTENSIONS[fmt]:
            yield record.replace(width=width, height=height, source_format=fmt).quarantine(
                f"decode:extension_mismatch:{fmt}")
            return
        yield record.replace(width=width, height=height, source_format=fmt)
