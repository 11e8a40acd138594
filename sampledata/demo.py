"""Build the bundled demo dataset from public-domain photos that ship inside scikit-image.

astronaut (NASA, Eileen Collins, public domain) and camera (a cameraman, CC0 by Lav Varshney)
give real faces; coffee and chelsea (the cat), both CC0, are face-less (see skimage.data's
docstrings). From them we build
multi-face composites, a photo stored rotated with an EXIF orientation tag, and write rich
identifying metadata into them with exiftool (GPS, serials, owner, XMP, IPTC, comment, EXIF
thumbnail), so the demo shows every kind of leak the job removes.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image
from skimage import data as skdata

# exiftool arguments that write identifying metadata into a JPEG (values are made up).
RICH_METADATA = [
    "-GPSLatitude=48.8584", "-GPSLatitudeRef=N", "-GPSLongitude=2.2945", "-GPSLongitudeRef=E",
    "-Make=DemoCam", "-Model=DC-1", "-SerialNumber=SN-0012345", "-LensSerialNumber=LS-998877",
    "-OwnerName=Jane Example", "-Artist=Jane Example", "-Copyright=Jane Example",
    "-XMP-dc:Creator=Jane Example", "-XMP-dc:Description=Jane at the tower",
    "-IPTC:By-line=Jane Example", "-IPTC:City=Paris", "-Comment=taken by Jane Example",
]


def _photo(name: str) -> Image.Image:
    array = getattr(skdata, name)()
    return Image.fromarray(array).convert("RGB")


def _composite(parts: list[tuple[Image.Image, float]], size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("RGB", size, (200, 205, 210))
    x = 0
    for image, scale in parts:
        scaled = image.resize((int(image.width * scale), int(image.height * scale)),
                              Image.Resampling.LANCZOS)
        canvas.paste(scaled, (x, (size[1] - scaled.height) // 2))
        x += scaled.width
    return canvas


def _jpeg(image: Image.Image, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


def _add_metadata(path: Path, thumbnail: Path) -> None:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        raise RuntimeError("exiftool is needed to build the demo data "
                           "(Debian: apt-get install libimage-exiftool-perl)")
    subprocess.run(
        [exiftool, "-q", "-overwrite_original", *RICH_METADATA,
         f"-ThumbnailImage<={thumbnail}", str(path)],
        check=True)


def build_demo_dataset(folder: Path) -> list[Path]:
    """Write the demo images into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    astronaut, camera = _photo("astronaut"), _photo("camera")
    files: dict[str, bytes] = {
        "people/astronaut.jpg": _jpeg(astronaut),
        "people/cameraman.png": b"",
        "people/two-people.jpg": _jpeg(_composite([(astronaut, 1.0), (camera, 1.0)],
                                                  (1024, 512))),
        "people/four-people.jpg": _jpeg(_composite(
            [(astronaut, 0.5), (camera, 0.5), (astronaut, 0.35), (camera, 0.35)], (870, 300))),
        "scenes/coffee.jpg": _jpeg(_photo("coffee")),
        "scenes/chelsea.webp": b"",
    }
    buffer = io.BytesIO()
    camera.save(buffer, "PNG", pnginfo=_png_text())
    files["people/cameraman.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    _photo("chelsea").save(buffer, "WEBP", quality=90)
    files["scenes/chelsea.webp"] = buffer.getvalue()
    # Stored rotated by 90 degrees with EXIF Orientation 6: upright only when the tag is applied.
    exif = Image.Exif()
    exif[0x0112] = 6
    files["people/astronaut-rotated.jpg"] = _jpeg(astronaut.transpose(Image.Transpose.ROTATE_90),
                                                  exif=exif.tobytes())
    written = []
    for rel, payload in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        written.append(path)
    thumbnail = folder / ".thumb.jpg"
    thumbnail.write_bytes(_jpeg(astronaut.resize((160, 160))))
    for path in written:
        if path.suffix == ".jpg":
            _add_metadata(path, thumbnail)
    thumbnail.unlink()
    return written


def _png_text() -> object:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Author", "Jane Example")
    info.add_text("Location", "48.8584 N, 2.2945 E")
    return info


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-data/images")
    if folder.exists():
        shutil.rmtree(folder)
    paths = build_demo_dataset(folder)
    sys.stdout.write(f"demo dataset: {len(paths)} images in {os.fspath(folder)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
