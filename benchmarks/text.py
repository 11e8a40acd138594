"""Text benchmark (redact: faces,text): recall per text-height band and throughput with text on vs off.

The labelled set is generated (``tests/text_scenes.py``): scikit-image's sample photos with licence
plates (three formats), name badges and signs composited in, at character heights of 8-48 px and
angles up to 15 degrees. Per band of the character height it prints:

- ``box``: share of labels whose box is at least 90% covered by the text detector's boxes;
- ``replaced``: share of labels with at least 90% of their pixels replaced in the output of
  ``replace_faces`` under a solid fill (the job's grown boxes, the pixels a reader loses).

It also prints the text regions found on text-free photos (the sample photos without lettering
and the tests' face photos), and the detect stage's images/s with the product's detectors
(``conf/base.yaml``: fast_mtcnn + CenterFace) for ``redact: faces`` beside ``redact: faces,text``.

    python benchmarks/text.py                 # 40 scenes
    python benchmarks/text.py --scenes 8 --repeat 1
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.anonymize import detector_stack_for  # noqa: E402
from pipelines.config import build_options  # noqa: E402
from tests.datasets import face_photo  # noqa: E402
from tests.text_scenes import BANDS, PHOTOS, _photo, band_of, coverage, text_scenes  # noqa: E402
from transforms.detection.text import TextDetector, TextSettings  # noqa: E402
from transforms.replacement import ReplacementPolicy, replace_faces  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAGENTA = (255, 0, 255)


def _band_name(band: tuple[int, int]) -> str:
    return f">={band[0]}" if band[1] >= 1000 else f"{band[0]}-{band[1]}"


def recall(scenes_count: int) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Per band: labels, labels whose box the detector covers, labels whose pixels are replaced."""
    detector = TextDetector(TextSettings())
    policy = ReplacementPolicy(method="solid", solid_color=MAGENTA)
    counts: dict[tuple[int, int], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for scene in text_scenes(scenes_count):
        found = detector.detect([scene.image])[0]
        output = np.asarray(replace_faces(scene.image, found, policy))
        filled = np.all(output == MAGENTA, axis=2)
        for label in scene.labels:
            entry = counts[band_of(label.char_height)]
            entry[0] += 1
            entry[1] += coverage(label.box, [f.box for f in found]) >= 0.9
            x1, y1, x2, y2 = (int(v) for v in label.box)
            entry[2] += float(filled[y1:y2, x1:x2].mean()) >= 0.9
    return {band: (c[0], c[1], c[2]) for band, c in sorted(counts.items())}


def false_regions() -> tuple[int, int]:
    """Text regions found on text-free photos, and how many photos."""
    photos = [_photo(name) for name in PHOTOS if name != "coins"] + [face_photo(seed) for seed in range(6)]
    return sum(len(found) for found in TextDetector(TextSettings()).detect(photos)), len(photos)


def throughput(scenes_count: int, repeat: int) -> dict[str, float]:
    """Detect-stage images/s of the product's detectors, text off and on (best of ``repeat``)."""
    images = [scene.image for scene in text_scenes(scenes_count)]
    overrides = ["input=/in", "output=/out", "purpose=benchmark", "legal_basis=legitimate_interests",
                 "identity_check=false"]
    rates: dict[str, float] = {}
    for redact in ("faces", "faces,text"):
        options, _ = build_options([str(ROOT / "conf" / "base.yaml")], [*overrides, f"redact={redact}"])
        detector = detector_stack_for(options).detect()
        detector.detect(images[:1])  # warm-up
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for image in images:
                detector.detect([image])
            best = min(best, time.perf_counter() - start)
        rates[redact] = len(images) / best
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40, help="generated scenes for recall")
    parser.add_argument("--speed-scenes", type=int, default=8, help="generated scenes for throughput")
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs, best kept")
    args = parser.parse_args(argv)
    print(f"text recall on {args.scenes} generated scenes (640x480; plates, badges, signs)")
    print(f"{'char height px':<16}{'labels':>8}{'box':>8}{'replaced':>10}")
    rows = recall(args.scenes)
    for band in BANDS:
        labels, box, replaced = rows.get(band, (0, 0, 0))
        if labels:
            print(f"{_band_name(band):<16}{labels:>8}{box / labels:>8.3f}{replaced / labels:>10.3f}")
    found, photos = false_regions()
    print(f"text regions on {photos} text-free photos: {found}")
    rates = throughput(args.speed_scenes, args.repeat)
    print(f"detect images/s (fast_mtcnn+centerface, 1 thread, 640x480): faces {rates['faces']:.2f}  "
          f"faces,text {rates['faces,text']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
