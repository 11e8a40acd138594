"""Decode + normalise, and metadata stripping checked at the container level and by exiftool."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from tests.helpers import exiftool_tags, jpeg_bytes, linear_rgb_icc_profile
from transforms.decode import ImageRejected, load_normalized
from transforms.metadata import (
    ENTROPY_CODED,
    encode_clean,
    jpeg_parts,
    metadata_fields,
    remaining_metadata,
    strip_jpeg_metadata,
)


def _png(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.mark.parametrize(("orientation", "expected_size"), [(1, (60, 40)), (6, (40, 60)), (3, (60, 40))])
def test_exif_orientation_is_baked_into_pixels(orientation: int, expected_size: tuple[int, int]) -> None:
    array = np.zeros((40, 60, 3), np.uint8)
    array[:10, :10] = 255  # a white corner at top-left as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    image, fmt = load_normalized(jpeg_bytes(Image.fromarray(array), exif=exif.tobytes()), 10**6)
    assert fmt == "JPEG" and image.size == expected_size
    pixels = np.asarray(image)
    corner = {1: pixels[:8, :8], 6: pixels[:8, -8:], 3: pixels[-8:, -8:]}[orientation]
    assert corner.mean() > 200


@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGBA", "I;16", "1", "CMYK"])
def test_odd_modes_become_rgb_or_rgba(mode: str) -> None:
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8))
    if mode == "I;16":
        image = Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
        data = _png(image)
    elif mode == "CMYK":
        data = jpeg_bytes(base.convert("CMYK"))
    else:
        data = _png(base.convert(mode))
    image, _ = load_normalized(data, 10**6)
    assert image.mode in ("RGB", "RGBA")
    assert image.mode == "RGBA" if mode in ("LA", "RGBA") else image.mode == "RGB"
    if mode == "I;16":  # the 16-bit range is scaled, not clipped to white
        values = np.asarray(image)[..., 0]
        assert values.min() == 0 and values.max() == 255


def test_icc_profile_is_converted_to_srgb_and_dropped() -> None:
    grey = Image.new("RGB", (8, 8), (128, 128, 128))
    data = _png(grey, icc_profile=linear_rgb_icc_profile())
    image, _ = load_normalized(data, 10**6)
    value = np.asarray(image)[0, 0, 0]
    assert 180 <= value <= 195  # linear 0.5 is sRGB ~188: the profile was applied, not ignored
    clean, removed = encode_clean(image, data, "PNG", 95)
    assert "ICC_Profile" in removed or "PNG:iCCP" in removed
    assert remaining_metadata(clean) == []
    untagged, _ = load_normalized(_png(grey), 10**6)
    assert np.asarray(untagged)[0, 0, 0] == 128  # untagged pixels are read as sRGB, unchanged


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty_file"),
    (b"GIF89a" + b"\x00" * 20, "undecodable"),
])
def test_rejections_have_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        load_normalized(data, 10**6)
    assert caught.value.reason == reason


def test_decompression_bomb_and_unsupported_format() -> None:
    with pytest.raises(ImageRejected, match="too_many_pixels"):
        load_normalized(_png(Image.new("L", (2000, 2000))), 1_000_000)
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, "TIFF")
    with pytest.raises(ImageRejected, match="unsupported_format"):
        load_normalized(buffer.getvalue(), 10**6)


def _rich_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "DemoCam"  # Make
    exif[0x013B] = "Jane Example"  # Artist
    return jpeg_bytes(Image.new("RGB", (32, 32), (10, 200, 10)), exif=exif.tobytes(),
                      comment=b"secret comment", icc_profile=ImageCms.ImageCmsProfile(
                          ImageCms.createProfile("sRGB")).tobytes(),
                      xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://ns.adobe.com/xap/1.0/">'
                          b"</rdf:RDF></x:xmpmeta>")


def test_container_reader_finds_every_segment_and_clean_encoding_has_none() -> None:
    data = _rich_jpeg()
    found = remaining_metadata(data)
    assert {"EXIF", "Comment", "ICC_Profile"} <= set(found)
    names = metadata_fields(data)
    assert "EXIF:Artist" in names and "EXIF:Make" in names
    assert not any("Jane" in name for name in names)
    image, fmt = load_normalized(data, 10**6)
    for target in ("JPEG", "PNG", "WEBP"):
        clean, removed = encode_clean(image, data, target, 95)
        assert remaining_metadata(clean) == [], target
        assert "EXIF:Artist" in removed


def test_png_text_chunks_are_found_and_removed(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Jane Example")
    info.add_itxt("Location", "Paris")
    data = _png(Image.new("RGB", (16, 16)), pnginfo=info)
    assert {"PNG:tEXt", "PNG:iTXt"} <= set(remaining_metadata(data))
    image, _ = load_normalized(data, 10**6)
    clean, removed = encode_clean(image, data, "PNG", 95)
    assert "PNG:text:Author" in removed
    path = tmp_path / "clean.png"
    path.write_bytes(clean)
    tags = exiftool_tags(path)
    assert not [k for k in tags if k.startswith("PNG:") and k not in (
        "PNG:ImageWidth", "PNG:ImageHeight", "PNG:BitDepth", "PNG:ColorType", "PNG:Compression",
        "PNG:Filter", "PNG:Interlace")]


def test_webp_metadata_chunks_are_reported() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x013B] = "Jane Example"
    Image.new("RGB", (16, 16)).save(buffer, "WEBP", exif=exif.tobytes())
    assert "WebP:EXIF" in remaining_metadata(buffer.getvalue())


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _progressive_jpeg_with_hidden_segments() -> bytes:
    """A progressive JPEG with rich metadata, an IPTC segment, a comment between two of its scans
    (where a reader that stops at the first scan never looks) and a second JPEG appended after EOI."""
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x013B] = "Jane Example"  # Artist
    data = jpeg_bytes(image, progressive=True, exif=exif.tobytes(), comment=b"secret comment")
    scans = [start for marker, start, _ in jpeg_parts(data) if marker == 0xDA]
    assert len(scans) > 2
    iptc = _segment(0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x0d"
                    + b"\x1c\x02\x50\x00\x08Jane Exa\x00")
    data = data[:2] + iptc + data[2:scans[1]] + _segment(0xFE, b"between scans: Jane") + data[scans[1]:]
    return data + jpeg_bytes(Image.new("RGB", (8, 8), (255, 0, 0)))


def test_stripped_jpeg_keeps_compressed_data_and_loses_every_segment(tmp_path: Path) -> None:
    data = _progressive_jpeg_with_hidden_segments()
    found = remaining_metadata(data)
    assert {"EXIF", "IPTC", "JPEG:trailing_data"} <= set(found) and found.count("Comment") == 2
    stripped = strip_jpeg_metadata(data)
    assert remaining_metadata(stripped) == []
    # The compressed image data is byte for byte the source's, so the pixels are too.
    def coded(blob: bytes) -> list[bytes]:
        return [blob[start:end] for marker, start, end in jpeg_parts(blob)
                if marker == ENTROPY_CODED or 0xC0 <= marker <= 0xDB]
    assert coded(stripped) == coded(data) and len(coded(data)) > 6
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stripped))), np.asarray(Image.open(io.BytesIO(data))))
    path = tmp_path / "stripped.jpg"
    path.write_bytes(stripped)
    tags = exiftool_tags(path)
    neutral = ("SourceFile", "ExifTool:", "File:", "Composite:")
    assert not {k: v for k, v in tags.items() if not k.startswith(neutral)}, tags
    assert "Jane" not in str(tags)
    # The rich test JPEG (EXIF, XMP, ICC, comment) strips clean too.
    assert remaining_metadata(strip_jpeg_metadata(_rich_jpeg())) == []


def test_malformed_jpeg_is_not_stripped() -> None:
    data = jpeg_bytes(Image.new("RGB", (32, 32), (10, 200, 10)))
    with pytest.raises(ValueError, match="EOI"):
        strip_jpeg_metadata(data[: len(data) - 2])  # cut before its EOI
    with pytest.raises(ValueError, match="past the end"):
        strip_jpeg_metadata(data[:2] + b"\xff\xe1\x40\x00" + b"\x00" * 10)
    with pytest.raises(ValueError, match="not a JPEG"):
        strip_jpeg_metadata(b"\x89PNG")


def _mpo(primary: Image.Image, second: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    primary.save(buffer, "MPO", save_all=True, append_images=[second], quality=92, **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_multi_picture_jpeg_is_read_as_its_primary_image_and_its_other_images_are_dropped() -> None:
    # Ultra HDR / gain-map / stereo JPEGs carry further images after the first (MPF).
    rng = np.random.default_rng(6)
    primary = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    second = Image.new("RGB", (64, 48), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated
    data = _mpo(primary, second, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).format == "MPO"
    image, fmt = load_normalized(data, 10**6)
    assert (fmt, image.size) == ("JPEG", (48, 64))
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(image), np.rot90(stored, -1))  # the first image, upright
    assert {"MPF", "JPEG:trailing_data"} <= set(metadata_fields(data))
    clean, removed = encode_clean(image, data, fmt, 95)
    assert remaining_metadata(clean) == [] and "MPF" in removed
    reread = Image.open(io.BytesIO(clean))
    assert reread.format == "JPEG" and getattr(reread, "n_frames", 1) == 1
    stripped = strip_jpeg_metadata(_mpo(primary, second))
    assert remaining_metadata(stripped) == [] and Image.open(io.BytesIO(stripped)).format == "JPEG"
