"""Text benchmark (redact: faces,text): recall per text-height band and throughput with text on vs off.

The labelled set is generated (``tests/text_scenes.py``): scikit-image's sample photos with licence
plates (three formats), name badges and signs composited in, at character heights of 8-48 px and
angles up to 15 degrees. Per band of the character height it prints:

- ``box``: share of labels whose box is at least 90% covered by the text detector's boxes;
- ``replaced``: share of labels with at least 90% of their pixels replaced in the output of
  ``replace_faces`` under a solid fill (the job's grown boxes, the pixels a reader loses).

It prints how many of the detector's regions on those scenes the verify stage's reader
(``transforms/detection/text_reading.py``) reads, on the clean scene and after the job's blur, and
the text regions found on text-free photos (the sample photos without lettering
and the tests' face photos), and the detect stage's images/s with the product's detectors
(``conf/base.yaml``: fast_mtcnn + CenterFace) for ``redact: faces`` beside ``redact: faces,text``.

With ``--whole-job N`` (default 16; 0: off) it runs the whole ``anonymize run`` (its CLI, the default
policy, ``--workers`` DirectRunner processes) on N generated scenes written as JPEGs, once with
``redact: faces`` and once with ``redact: faces,text``, both with the accuracy-impact reference model
on every record (``reference_model: mobilenet_v2``, the bundled ImageNet weights), and prints for
each: images/s of the whole job (start-up included), what was published and withheld, regions
found by kind, and the reference model's top-1 and top-5 agreement between each original and its
output (the scenes have no class labels, so agreement is the accuracy-impact figure): the cost of
redacting text is the difference between the two runs.

No other text detector is compared: none is installed and usable offline here (no tesseract binary,
no EasyOCR, keras-ocr, MMOCR or docTR package, and OpenCV's EAST/DB text detectors need model files
that ship with no installed package).

With ``--wider-dev [PATH]`` the whole-job runs take N real WIDER FACE photos instead (streets,
parades, meetings: real signs, banners and shirts; no text labels, so only the accuracy cost and
the speed are printed).

    python benchmarks/text.py                 # 40 scenes, whole job on 16
    python benchmarks/text.py --scenes 8 --repeat 1 --whole-job 0
    python benchmarks/text.py --wider-dev --whole-job 100
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.real_photos import DEFAULT_WIDER, copy_wider, published_outputs, run_ours  # noqa: E402
from pipelines.anonymize import detector_stack_for  # noqa: E402
from pipelines.config import build_options  # noqa: E402
from tests.datasets import face_photo  # noqa: E402
from tests.text_scenes import BANDS, PHOTOS, _photo, band_of, coverage, text_scenes  # noqa: E402
from transforms.detection.text import TextDetector, TextSettings  # noqa: E402
from transforms.detection.text_reading import TextReader  # noqa: E402
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


def reading(scenes_count: int) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Per band: regions the detector finds on the clean scenes, how many of them the verify
    stage's reader reads (``text_reading.Reading.readable``) there, and how many after the job's blur."""
    detector = TextDetector(TextSettings())
    reader = TextReader()
    policy = ReplacementPolicy(method="gaussian")
    counts: dict[tuple[int, int], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for scene in text_scenes(scenes_count):
        found = detector.detect([scene.image])[0]
        blurred = replace_faces(scene.image, found, policy)
        for face in found:
            heights = [label.char_height for label in scene.labels if coverage(label.box, [face.box]) > 0]
            entry = counts[band_of(min(heights)) if heights else (0, 0)]
            entry[0] += 1
            entry[1] += reader.read(scene.image, face.box).readable
            entry[2] += reader.read(blurred, face.box).readable
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


def _agreement(accuracy: dict[str, Any] | None, key: str) -> str:
    rate = (accuracy or {}).get(key) or {}
    if rate.get("value") is None:
        return "n/a"
    low, high = rate["ci95"]
    return f"{rate['value']:.3f} [{low:.3f}, {high:.3f}] (n {rate['n']})"


def whole_job(scenes_count: int, workers: int, wider: Path | None = None) -> dict[str, dict[str, Any]]:
    """``anonymize run`` on ``scenes_count`` generated scenes (with ``wider``: that many WIDER FACE
    photos of that folder instead, copied to a temporary folder only) with ``redact: faces`` and
    with ``redact: faces,text`` and the reference model on: per setting, seconds, images/s,
    outcome, regions by kind and the accuracy impact (``summary.json``)."""
    work = Path(tempfile.mkdtemp(prefix="text-job-"))
    try:
        folder = work / "in"
        folder.mkdir()
        names = []
        if wider is not None:
            names = sorted(copy_wider(wider, folder, scenes_count))  # relative paths: wider/<event>/<photo>
        for index, scene in enumerate(text_scenes(scenes_count) if wider is None else ()):
            names.append(f"scene-{index:03d}.jpg")
            scene.image.convert("RGB").save(folder / names[-1], quality=92)
        out: dict[str, dict[str, Any]] = {}
        for redact in ("faces", "faces,text"):
            output = work / f"out-{redact.replace(',', '-')}"
            seconds = run_ours(ROOT, folder, output, workers,
                               [f"redact={redact}", "reference_model=mobilenet_v2", "reference_sample_size=0"])
            outputs, reasons, _ = published_outputs(output, names)
            summary = json.loads((output / "report" / "summary.json").read_text())
            import pyarrow.parquet as pq

            kinds: Counter[str] = Counter()
            verify = Counter[str]()
            for row in pq.read_table(output / "manifest").to_pylist():
                kinds.update(row.get("face_kinds") or [])
                verify["unread text regions on outputs"] += row.get("unread_text_regions") or 0
                verify["second passes"] += (row.get("replace_passes") or 1) > 1
                if row["status"] == "published":
                    verify["residual on published"] += row.get("residual_faces") or 0
            out[redact] = {"seconds": seconds, "rate": len(names) / seconds, "reasons": dict(reasons),
                           "published": sum(1 for o in outputs.values() if o is not None), "kinds": dict(kinds),
                           "accuracy": summary.get("accuracy_impact"), "images": len(names),
                           "verify": dict(verify)}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40, help="generated scenes for recall")
    parser.add_argument("--speed-scenes", type=int, default=8, help="generated scenes for throughput")
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs, best kept")
    parser.add_argument("--whole-job", type=int, default=16, help="scenes for the whole-job runs (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes of the whole job")
    parser.add_argument("--wider-dev", type=Path, nargs="?", const=DEFAULT_WIDER, default=None,
                        help="the whole-job runs on that many real WIDER FACE photos instead of generated scenes")
    args = parser.parse_args(argv)
    if args.wider_dev is not None and args.whole_job > 0:
        # Real photos: no text labels, so only the whole job's figures (accuracy cost, speed).
        return _print_whole_job(whole_job(args.whole_job, args.workers, args.wider_dev), args.workers,
                                f"{args.whole_job} WIDER FACE photos")
    print(f"text recall on {args.scenes} generated scenes (640x480; plates, badges, signs)")
    print(f"{'char height px':<16}{'labels':>8}{'box':>8}{'replaced':>10}")
    rows = recall(args.scenes)
    for band in BANDS:
        labels, box, replaced = rows.get(band, (0, 0, 0))
        if labels:
            print(f"{_band_name(band):<16}{labels:>8}{box / labels:>8.3f}{replaced / labels:>10.3f}")
    print("\nverify reading on the detector's regions of the same scenes (readable: "
          ">= 2 characters at >= 0.5 confidence)")
    print(f"{'char height px':<16}{'regions':>8}{'read':>8}{'read after blur':>17}")
    for band, (regions, read, read_after) in reading(args.scenes).items():
        name = _band_name(band) if band != (0, 0) else "no label"
        print(f"{name:<16}{regions:>8}{read:>8}{read_after:>17}")
    found, photos = false_regions()
    print(f"text regions on {photos} text-free photos: {found}")
    rates = throughput(args.speed_scenes, args.repeat)
    print(f"detect images/s (fast_mtcnn+centerface, 1 thread, 640x480): faces {rates['faces']:.2f}  "
          f"faces,text {rates['faces,text']:.2f}")
    if args.whole_job > 0:
        _print_whole_job(whole_job(args.whole_job, args.workers), args.workers,
                         f"{args.whole_job} generated text scenes")
    return 0


def _print_whole_job(jobs: dict[str, dict[str, Any]], workers: int, what: str) -> int:
    """Print the whole-job figures of ``whole_job`` on ``what``; 0."""
    print(f"\nwhole job (anonymize run, default policy, {workers} workers, reference model mobilenet_v2 on "
          f"every record) on {what}:")
    for redact, job in jobs.items():
        print(f"redact {redact:<11} {job['seconds']:7.1f} s {job['rate']:6.2f} images/s (start-up included); "
              f"published {job['published']}/{job['images']}, withheld {job['reasons'] or 'none'}; "
              f"regions found by kind {job['kinds'] or 'none'}")
        print(f"  verify: {job['verify']}")
        print(f"  reference top-1 agreement {_agreement(job['accuracy'], 'top1_agreement')}, "
              f"top-5 {_agreement(job['accuracy'], 'top5_agreement')}")
    faces, text = (jobs[k]["accuracy"] or {} for k in ("faces", "faces,text"))
    one, two = ((faces.get("top1_agreement") or {}).get("value"), (text.get("top1_agreement") or {}).get("value"))
    if one is not None and two is not None:
        print(f"cost of redacting text: top-1 agreement {100 * (two - one):+.1f} points against faces only; "
              f"whole job {jobs['faces,text']['rate'] / jobs['faces']['rate']:.2f}x the images/s of faces only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
