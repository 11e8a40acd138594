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
from transforms.detection import DetectorFactory
from transforms.manifest import read_manifests

BASE_CONF = str(Path(__file__).resolve().parents[1] / "conf" / "base.yaml")


def run_job(input_uri: str, output_uri: str, detector_factory: DetectorFactory | None = None,
            verify_factory: DetectorFactory | None = None, **settings: Any) -> pa.Table:
    """Run the job (single-process DirectRunner) and return all manifest rows of the output."""
    overrides = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
    options, _ = build_options([BASE_CONF], [f"input={input_uri}", f"output={output_uri}", *overrides],
                               ["--runner=DirectRunner"])
    run(options=options, detector_factory=detector_factory, verify_factory=verify_factory)
    return read_manifests(output_uri, options.s3_endpoint)


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


__all__ = ["run_job", "exiftool_tags", "jpeg_bytes", "settings_to_argv"]
