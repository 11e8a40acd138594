"""Shared test helpers: running the job on a folder and reading what it wrote."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image

from pipelines.anonymize import run
from pipelines.config import build_options, settings_to_argv
from pipelines.settings import storage_for
from transforms.detection import DetectorFactory
from transforms.manifest import read_manifests

BASE_CONF = str(Path(__file__).resolve().parents[1] / "conf" / "base.yaml")
# The record of processing every run needs (purpose and legal basis are required settings).
ACCOUNTABILITY = {"purpose": "automated tests of the anonymizer", "legal_basis": "legitimate_interests"}
ACCOUNTABILITY_SETS = [arg for key, value in ACCOUNTABILITY.items() for arg in ("--set", f"{key}={value}")]


def run_job(input_uri: str, output_uri: str, detector_factory: DetectorFactory | None = None,
            verify_factory: DetectorFactory | None = None, **settings: Any) -> pa.Table:
    """Run the job (single-process DirectRunner) and return all manifest rows of the output."""
    settings = ACCOUNTABILITY | settings
    overrides = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
    options, _ = build_options([BASE_CONF], [f"input={input_uri}", f"output={output_uri}", *overrides],
                               ["--runner=DirectRunner"])
    run(options=options, detector_factory=detector_factory, verify_factory=verify_factory)
    return read_manifests(output_uri, storage_for(options))


def exiftool_tags(path: Path) -> dict[str, Any]:
    """Every tag exiftool reads from ``path``, grouped as ``Group:Tag``."""
    exiftool = shutil.which("exiftool")
    assert exiftool is not None, "exiftool missing: `make test` installs libimage-exiftool-perl"
    out = subprocess.run([exiftool, "-j", "-G", "-a", "-u", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out)[0])


def jpeg_bytes(image: Image.Image, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **kwargs)
    return buffer.getvalue()


__all__ = ["ACCOUNTABILITY_SETS", "run_job", "exiftool_tags", "jpeg_bytes", "settings_to_argv"]


def linear_rgb_icc_profile() -> bytes:
    """A minimal ICC v2 display profile: sRGB primaries with a linear (gamma 1.0) tone curve.

    Pixels tagged with it are darker in the mid-tones than the same numbers read as sRGB, so a
    decoder that ignores the profile shows visibly wrong colours.
    """
    import struct

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    text = b"linear sRGB test profile\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 4 + b"\0" * 4 + b"\0" * 3 + b"\0" * 67
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0100) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + b"\0" * 4 + b"public domain\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        payload += b"\0" * (-len(payload) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += payload
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\0" * 4 + b"\0" * 8 + b"\0" * 8
              + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_golden(name: str, pixels: Any, tolerance: int = 2) -> None:
    """Compare ``pixels`` with ``tests/golden/<name>.png``; ``UPDATE_GOLDEN=1`` rewrites it."""
    import os

    import numpy as np

    path = GOLDEN_DIR / f"{name}.png"
    array = np.asarray(pixels, dtype=np.uint8)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        Image.fromarray(array).save(path)
    assert path.exists(), f"golden image {path} missing: run the test once with UPDATE_GOLDEN=1 and review it"
    golden = np.asarray(Image.open(path), dtype=np.int16)
    assert golden.shape == array.shape, (golden.shape, array.shape)
    assert np.abs(golden - array.astype(np.int16)).max() <= tolerance, f"{name} differs from its golden image"
