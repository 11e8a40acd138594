"""Strip metadata and encode: outputs are rebuilt from pixels, so only chosen bytes survive.

``metadata_fields`` names what a source carried (names only, never values). ``encode_clean``
writes pixels alone (colour already converted to sRGB at decode, so no ICC profile is needed).
``strip_jpeg_metadata`` keeps a JPEG's compressed data and drops every metadata segment, for
images whose pixels need no change.
``remaining_metadata`` is an independent container-level reader used by verification: it walks
JPEG markers, PNG chunks and WebP RIFF chunks itself rather than trusting Pillow.
"""

from __future__ import annotations

import io
import struct

from PIL import ExifTags, Image

# Segments a clean output may contain. Anything else is metadata (or unexpected) and is reported.
_JPEG_ALLOWED_APP = {0xE0: b"JFIF\x00"}
_PNG_ALLOWED = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"}
_WEBP_ALLOWED = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH"}
_JPEG_APP_NAMES = {
    0xE1: "APP1", 0xE2: "APP2", 0xEC: "APP12", 0xED: "APP13", 0xEE: "APP14",
}


_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # TEM, SOI, RSTn: no length field
_JPEG_EOI = 0xD9
_JPEG_SOS = 0xDA
ENTROPY_CODED = -1


def _entropy_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data starting at ``pos`` ends: the next marker that is not a
    stuffed byte (FF 00) or a restart marker (FF D0-D7)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos == -1 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2
            continue
        return pos


def jpeg_parts(data: bytes) -> list[tuple[int, int, int]]:
    """Every part of a JPEG in order, as ``(marker, start, end)`` byte ranges: marker segments
    (header included), each scan's entropy-coded data (marker ``ENTROPY_CODED``), and the EOI
    marker when present. Segments between progressive scans are walked too; bytes after EOI are
    not part of the image.

    Raises:
        ValueError: not a JPEG, or a segment's length runs past the end.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    pos, parts = 2, [(0xD8, 0, 2)]
    while pos < len(data):
        if data[pos] != 0xFF or pos + 1 >= len(data):
            raise ValueError(f"bad JPEG marker at {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE or marker == _JPEG_EOI:
            parts.append((marker, pos, pos + 2))
            pos += 2
            if marker == _JPEG_EOI:
                break
            continue
        if pos + 4 > len(data):
            raise ValueError(f"JPEG segment header cut at {pos}")
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise ValueError(f"JPEG segment at {pos} runs past the end")
        parts.append((marker, pos, end))
        pos = end
        if marker == _JPEG_SOS:
            scan_end = _entropy_end(data, pos)
            parts.append((ENTROPY_CODED, pos, scan_end))
            pos = scan_end
    return parts


def _is_jpeg_metadata(marker: int) -> bool:
    return 0xE0 <= marker <= 0xEF or marker == 0xFE  # APP0-APP15, COM


def strip_jpeg_metadata(data: bytes) -> bytes:
    """The JPEG with every APPn and COM segment and anything after EOI dropped: the compressed
    image data (tables, frame, scans) kept byte for byte, so no re-encoding loss.

    Dropping APP0 (JFIF), APP2 (ICC) or APP14 (Adobe) can change how a decoder reads the colours:
    callers must check that the result decodes to the pixels they expect.

    Raises:
        ValueError: malformed, or no EOI marker.
    """
    parts = jpeg_parts(data)
    if parts[-1][0] != _JPEG_EOI:
        raise ValueError("JPEG without an EOI marker")
    return b"".join(data[start:end] for marker, start, end in parts if not _is_jpeg_metadata(marker))


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC are not frames


def jpeg_is_rgb_coded(data: bytes) -> bool:
    """Whether a JPEG stores RGB, not YCbCr: an Adobe APP14 segment with colour transform 0 over
    three components, or frame component ids 'R', 'G', 'B'. Decoders read such data alike only
    with those hints, so it must be re-encoded, never kept with its APP segments dropped.
    Malformed data counts as RGB-coded (it is re-encoded from pixels)."""
    try:
        parts = jpeg_parts(data)
    except ValueError:
        return True
    adobe_transform: int | None = None
    components = b""
    for marker, start, end in parts:
        payload = data[start + 4:end]
        if marker == 0xEE and payload.startswith(b"Adobe") and len(payload) >= 12:
            adobe_transform = payload[11]
        elif marker in _JPEG_SOF and len(payload) >= 6:
            count = payload[5]
            components = bytes(payload[6 + 3 * i] for i in range(count) if 6 + 3 * i < len(payload))
    if components == b"RGB":
        return True
    return adobe_transform == 0 and len(components) == 3


def _jpeg_segment_name(marker: int, payload: bytes) -> str:
    if marker == 0xFE:
        return "Comment"
    if marker == 0xE1 and payload.startswith(b"Exif"):
        return "EXIF"
    if marker == 0xE1 and b"ns.adobe.com/xap" in payload[:64]:
        return "XMP"
    if marker == 0xE2 and payload.startswith(b"ICC_PROFILE"):
        return "ICC_Profile"
    if marker == 0xE2 and payload.startswith(b"MPF\x00"):
        return "MPF"  # the index of further images appended after EOI (trailing data)
    if marker == 0xED:
        return "IPTC"
    if marker == 0xE0 and payload.startswith(b"JFXX"):
        return "JFIF_Thumbnail"
    return "JPEG:" + _JPEG_APP_NAMES.get(marker, f"APP{marker - 0xE0}")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, chunks = 8, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP")
    pos, chunks = 12, []
    while pos + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[pos:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return chunks


def remaining_metadata(data: bytes) -> list[str]:
    """Metadata segments present in encoded image bytes, read at the container level.

    Returns:
        The names of segments that are not pure image data; empty for a clean image.

    Raises:
        ValueError: the bytes are not a well-formed JPEG, PNG or WebP.
    """
    found: list[str] = []
    if data[:2] == b"\xff\xd8":
        parts = jpeg_parts(data)
        for marker, start, end in parts:
            payload = data[start + 4:end]
            if _is_jpeg_metadata(marker) and not (
                    marker in _JPEG_ALLOWED_APP and payload.startswith(_JPEG_ALLOWED_APP[marker])):
                found.append(_jpeg_segment_name(marker, payload))
        # Bytes after EOI (an appended image, a maker's trailer), found by walking the markers:
        # a search for the last FF D9 would stop at an appended JPEG's own EOI.
        if parts[-1][0] == _JPEG_EOI and parts[-1][2] < len(data):
            found.append("JPEG:trailing_data")
        return found
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return [f"PNG:{kind.decode('latin-1')}" for kind, _ in _png_chunks(data)
                if kind not in _PNG_ALLOWED]
    if data[:4] == b"RIFF":
        names = []
        for kind, payload in _webp_chunks(data):
            if kind not in _WEBP_ALLOWED:
                names.append(f"WebP:{kind.decode('latin-1').strip()}")
            elif kind == b"VP8X" and payload and payload[0] & 0b00101100:
                names.append("WebP:VP8X_metadata_flags")
        return names
    raise ValueError("not a JPEG, PNG or WebP")


def _exif_field_names(image: Image.Image) -> list[str]:
    exif = image.getexif()
    names = [f"EXIF:{ExifTags.TAGS.get(tag, hex(tag))}" for tag in exif]
    for ifd, prefix in ((ExifTags.IFD.Exif, "EXIF"), (ExifTags.IFD.GPSInfo, "GPS")):
        try:
            sub = exif.get_ifd(ifd)
        except (KeyError, ValueError, struct.error):
            continue
        tags = ExifTags.GPSTAGS if prefix == "GPS" else ExifTags.TAGS
        names.extend(f"{prefix}:{tags.get(tag, hex(tag))}" for tag in sub)
    try:
        if exif.get_ifd(ExifTags.IFD.IFD1):
            names.append("EXIF:ThumbnailImage")
    except (KeyError, ValueError, struct.error):
        pass
    return names


def metadata_fields(data: bytes) -> list[str]:
    """Names (never values) of the metadata a source image carries, sorted and unique."""
    names: set[str] = set()
    try:
        names.update(remaining_metadata(data))
    except (ValueError, struct.error):
        pass
    try:
        with Image.open(io.BytesIO(data)) as image:
            names.update(_exif_field_names(image))
            for key in image.info:
                if key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment"):
                    continue
                if isinstance(image.info[key], (str, bytes)) and image.format == "PNG":
                    names.add(f"PNG:text:{key}")
    except (OSError, ValueError, SyntaxError, struct.error):
        pass
    return sorted(names)


def encode_clean(image: Image.Image, source: bytes, fmt: str, quality: int) -> tuple[bytes, list[str]]:
    """Encode ``image``'s pixels alone in the source's format.

    Args:
        image: the anonymized, upright, sRGB image.
        source: the original bytes (only read to name the metadata removed).
        fmt: the source format: ``JPEG``, ``PNG`` or ``WEBP``.
        quality: JPEG/WebP quality (4:4:4 chroma for JPEG so unchanged regions stay close).

    Returns:
        The encoded bytes and the names of the metadata fields the source had.
    """
    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    buffer = io.BytesIO()
    if fmt == "JPEG":
        clean.convert("RGB").save(buffer, "JPEG", quality=quality, subsampling=0)
    elif fmt == "PNG":
        clean.save(buffer, "PNG", compress_level=6)
    elif fmt == "WEBP":
        lossless = b"VP8L" in source[12:40]
        clean.save(buffer, "WEBP", quality=quality, lossless=lossless, exact=lossless)
    else:
        raise ValueError(f"cannot encode format {fmt!r}")
    return buffer.getvalue(), metadata_fields(source)
