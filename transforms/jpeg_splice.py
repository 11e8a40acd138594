"""Re-encode only the JPEG blocks a replacement touched; every other block keeps its coefficients.

A JPEG is a grid of MCUs (minimum coded units: 8x8 pixels, or 16x16 with 4:2:0 chroma), each
coded from its own pixels. ``splice_jpeg`` encodes the replaced pixels with the source's own
quantization tables and chroma sampling, and copies the coefficients of every MCU that holds a
changed pixel into the source's (metadata-free) coefficients; every other MCU is kept as it was.
The output then decodes to the source's very pixels except in and next to the changed MCUs (the
decoder's chroma upsampling reads one neighbouring block): no re-encoding loss outside the faces,
and outside them verification can rely on the detect stage's search of those very pixels
(transforms/verify_scope.py). ``jpeglib`` (libjpeg 6b, MPL-2.0) reads and writes the coefficients.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from transforms.metadata import strip_jpeg_metadata
from transforms.verify_scope import changed_mask

COMPONENTS = ("Y", "Cb", "Cr")
# Mean absolute difference (0-255) allowed between a changed MCU as decoded in the output and as
# decoded from the crop's own encoding: only the chroma upsampling at its border differs.
FAITHFUL_MEAN_ERROR = 2.0


def _tempdir() -> str | None:
    """A memory-backed folder for jpeglib's files (it reads and writes paths only), where there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def changed_mcus(changed: np.ndarray, mcu_width: int, mcu_height: int) -> np.ndarray:
    """Per MCU (rows x columns), whether any of its pixels is True in ``changed`` (H x W)."""
    height, width = changed.shape
    rows, cols = -(-height // mcu_height), -(-width // mcu_width)
    padded = np.zeros((rows * mcu_height, cols * mcu_width), bool)
    padded[:height, :width] = changed
    return np.asarray(padded.reshape(rows, mcu_height, cols, mcu_width).any(axis=(1, 3)))


@dataclass(frozen=True)
class Spliced:
    """A spliced JPEG, as its check decoded it: its bytes, its decoded RGB pixels, and where those
    differ from the source's (H x W booleans)."""

    data: bytes
    pixels: np.ndarray
    differs: np.ndarray


def splice_jpeg(source: bytes, anonymized: Image.Image, changed: np.ndarray,
                original: np.ndarray) -> Spliced | None:
    """The source JPEG, metadata-free, with the MCUs that hold a True pixel of ``changed`` re-encoded
    from ``anonymized``. ``original`` is the source's decoded RGB pixels; the caller checks that
    they need no orientation or colour transform (``anonymized`` has their size and orientation).
    None where this cannot be done (not a YCbCr or greyscale JPEG, a size mismatch, a jpeglib
    error) or where the decoded result is not faithful (``_faithful``): the caller re-encodes."""
    try:
        import jpeglib
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(dir=_tempdir()) as folder:
        try:
            src_path, crop_path, out_path = (os.path.join(folder, n) for n in ("src.jpg", "crop.jpg", "out.jpg"))
            with open(src_path, "wb") as f:
                f.write(strip_jpeg_metadata(source))
            src = jpeglib.read_dct(src_path)
            components = COMPONENTS[: src.num_components]
            if src.num_components not in (1, 3) or (src.width, src.height) != anonymized.size \
                    or changed.shape != (src.height, src.width):
                return None
            factors = np.asarray(src.samp_factor).reshape(-1, 2)[:, ::-1]  # jpeglib: (v, h); here (h, v)
            h_max, v_max = int(factors[:, 0].max()), int(factors[:, 1].max())
            mcu_w, mcu_h = 8 * h_max, 8 * v_max
            mcus = changed_mcus(changed, mcu_w, mcu_h)
            rows, cols = np.nonzero(mcus)
            if rows.size == 0:
                return None
            r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
            box = (c0 * mcu_w, r0 * mcu_h, min(src.width, c1 * mcu_w), min(src.height, r1 * mcu_h))
            pixels = np.asarray(anonymized.convert("RGB" if src.num_components == 3 else "L").crop(box))
            crop = jpeglib.from_spatial(np.ascontiguousarray(pixels if pixels.ndim == 3 else pixels[..., None]))
            crop.samp_factor = src.samp_factor
            crop.write_spatial(crop_path, qt=src.qt, quant_tbl_no=src.quant_tbl_no)
            coded = jpeglib.read_dct(crop_path)
            wanted = mcus[r0:r1, c0:c1]
            for name, (h, v) in zip(components, factors, strict=True):
                target, patch = getattr(src, name), getattr(coded, name)
                blocks = np.repeat(np.repeat(wanted, int(v), axis=0), int(h), axis=1)
                rows_c = min(patch.shape[0], blocks.shape[0], target.shape[0] - r0 * v)
                cols_c = min(patch.shape[1], blocks.shape[1], target.shape[1] - c0 * h)
                region = target[r0 * v: r0 * v + rows_c, c0 * h: c0 * h + cols_c]
                mask = blocks[:rows_c, :cols_c]
                region[mask] = patch[:rows_c, :cols_c][mask]
            src.markers = []
            src.write_dct(out_path)
            with open(out_path, "rb") as f:
                spliced = f.read()
            with Image.open(crop_path) as coded_crop:
                crop_pixels = np.asarray(coded_crop.convert("RGB"))
        except (OSError, ValueError, RuntimeError, AttributeError, IndexError):
            return None
    return _faithful(spliced, original, crop_pixels, box, mcus, mcu_w, mcu_h)


def source_pixels(source: bytes) -> np.ndarray:
    """The source JPEG's decoded RGB pixels, as Pillow decodes it."""
    with Image.open(io.BytesIO(source)) as image:
        return np.asarray(image.convert("RGB"))


def _faithful(spliced: bytes, original: np.ndarray, crop: np.ndarray, box: tuple[int, int, int, int],
              mcus: np.ndarray, mcu_w: int, mcu_h: int) -> Spliced | None:
    """``spliced`` with its decoded pixels where they pass the check, made on the decoded output
    independently of how the blocks were placed: each changed MCU decodes like the re-encoded crop
    (within the chroma upsampling's reach across its border), and every MCU farther than one MCU
    from a changed one decodes to the source's very pixels. None where they do not."""
    try:
        out = source_pixels(spliced)
    except OSError:
        return None
    if out.shape != original.shape:
        return None
    x0, y0, x1, y1 = box
    near = cv2.dilate(mcus.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    height, width = original.shape[:2]
    near_pixels = np.repeat(np.repeat(near, mcu_h, axis=0), mcu_w, axis=1)[:height, :width]
    differs = changed_mask(out, original)
    if (differs & ~near_pixels).any():
        return None
    errors = np.abs(out[y0:y1, x0:x1].astype(np.int16) - crop.astype(np.int16)).max(axis=-1)
    inside = np.repeat(np.repeat(mcus, mcu_h, axis=0), mcu_w, axis=1)[:height, :width][y0:y1, x0:x1]
    if not inside.any() or float(errors[inside].mean()) > FAITHFUL_MEAN_ERROR:
        return None
    return Spliced(spliced, out, differs)
