"""``benchmarks/detection.py --wider-dev [DIR]``: detector configurations on real labelled photos.

Each configuration detects faces in the WIDER FACE val photos of ``wider-dev`` (and in
scikit-image's face-less photos), its faces are replaced as the job replaces them (the default
policy of ``conf/base.yaml``: the configuration's detect detector, ``replacement_policy_for``;
deface: its own ellipse blur with ``mask_scale`` 1.3), and the output is scored:

- anonymization recall, as ``benchmarks/real_photos.py`` scores a published output: a valid
  ground-truth face counts when its box's pixels clearly changed on the output saved as a
  quality-95 JPEG (mean absolute difference above twice a re-encode's plus 1, SSIM at least 0.15
  under the re-encode's); per band of the box's shorter side and per WIDER attribute level;
- stray change: the share of the photos' pixels that changed (by more than 2 of 255 in a channel,
  on the output before encoding) farther than 2x a ground-truth box from every box (each box
  doubled about its centre; boxes marked invalid count as boxes here, and are neither hit nor miss);
- false positives on the face-less photos: faces replaced, images with a changed pixel, changed
  pixels;
- detection ms per image (wall time of ``detect`` over the WIDER photos, one at a time, best of
  ``--repeat``; the photos are 1024 px wide).

The photos are read from ``shared/data`` and never written anywhere (their licence).
``--generated hard:7`` (or ``plain:7``) scores the generated labelled set instead, written in
wider-dev's format to a temporary folder: the check that a default is not tuned to wider-dev.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.real_photos import (  # noqa: E402
    BANDS,
    DEFAULT_WIDER,
    FACELESS_PHOTOS,
    band_of,
    box_change,
    int_box,
)
from transforms.records import Face  # noqa: E402

ATTRIBUTES = (("blur", 3), ("occlusion", 3), ("pose", 2), ("illumination", 2))
ONLY_WHEN_NAMED = {"centerface_int8"}  # slow to build (quantized on each run): only with --only
CHANGED = 2  # a pixel changed: some channel moved by more than this (0-255), before encoding
Anonymize = Callable[[Image.Image, list[Face]], Image.Image]
Built = tuple[Any, Callable[[Face], bool], Anonymize]  # detector, which faces it replaces, replace them


@dataclass
class Configuration:
    """A detector, which of its faces are replaced, and how."""

    name: str
    detect: Callable[[Sequence[Image.Image]], list[list[Face]]]
    replaces: Callable[[Face], bool]
    anonymize: Anonymize

    def replaced(self, image: Image.Image, faces: list[Face]) -> tuple[Image.Image, int]:
        """The output and how many faces were replaced."""
        chosen = [f for f in faces if self.replaces(f)]
        return self.anonymize(image, chosen), len(chosen)


@dataclass
class Scores:
    faces: Counter[str] = field(default_factory=Counter)
    anonymized: Counter[str] = field(default_factory=Counter)
    stray_pixels: int = 0
    pixels: int = 0
    faceless_faces: int = 0
    faceless_images_changed: int = 0
    faceless_pixels_changed: int = 0
    faceless_pixels: int = 0
    seconds: float = math.inf
    images: int = 0

    def recall(self, key: str) -> float:
        return self.anonymized[key] / self.faces[key] if self.faces[key] else math.nan


def job_detection(overrides: Sequence[str], threads: int) -> Built:
    """The detect detector and replacement of the job under ``conf/base.yaml`` plus ``overrides``."""
    from pipelines.anonymize import detector_stack_for
    from pipelines.config import build_options
    from pipelines.settings import replacement_policy_for
    from transforms.replacement import replace_faces

    options, _ = build_options([str(ROOT / "conf" / "base.yaml")], [
        "input=/tmp/in", "output=/tmp/out", "purpose=benchmark", "legal_basis=legitimate_interests",
        "identity_check=false", f"torch_threads={threads}", "detector_device=cpu", *overrides])
    policy = replacement_policy_for(options)
    return (detector_stack_for(options).detect(), policy.replaces,
            lambda image, faces: replace_faces(image, faces, policy))


def _alone(detector: Any) -> Built:
    """A detector (or union) alone, every face it reports replaced under the default policy."""
    from transforms.replacement import ReplacementPolicy, replace_faces

    policy = ReplacementPolicy()
    return detector, lambda face: True, lambda image, faces: replace_faces(image, faces, policy)


def _deface() -> Built | None:
    try:
        from deface.centerface import CenterFace
        from deface.deface import anonymize_frame
    except ImportError:
        return None
    centerface = CenterFace(in_shape=None, backend="onnxrt")

    class Deface:
        def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
            out = []
            for image in images:
                dets, _ = centerface(np.asarray(image), threshold=0.2)
                out.append([Face(*(float(v) for v in d[:5]), "deface") for d in dets])  # type: ignore[misc]
            return out

    def anonymize(image: Image.Image, faces: list[Face]) -> Image.Image:
        frame = np.array(image)
        dets = np.array([[f.x1, f.y1, f.x2, f.y2, f.score] for f in faces]).reshape(-1, 5)
        anonymize_frame(dets, frame, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                        replaceimg=None, mosaicsize=20)
        return Image.fromarray(frame)

    return Deface(), lambda face: True, anonymize


def quantized_centerface(threads: int) -> Built:
    """CenterFace (its full-resolution pass only, as ``centerface``) on an int8 copy of its model:
    static QDQ quantization, per-channel weights, calibrated on 32 generated 640x480 photos of
    ``sampledata/labelled_faces.py`` (never on the photos it is scored on). Made in a temporary
    folder on each run (about 10 s); an experiment for CPUs with int8 dot products (AVX512-VNNI),
    not a product path."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from sampledata.labelled_faces import generate_labelled_set
    from transforms.detection.centerface import (
        CenterFaceDetector,
        CenterFaceSettings,
        _dynamic_model,
        centerface_model_path,
        onnx_session,
    )

    source = centerface_model_path()
    if source is None:
        raise RuntimeError("centerface_int8 needs deface's centerface.onnx")
    model = version_converter.convert_version(onnx.load_from_string(_dynamic_model(source)), 13)
    blobs = [np.asarray(labelled.image.convert("RGB"), np.float32).transpose(2, 0, 1)[None]
             for labelled, _ in generate_labelled_set(with_faces=24, faceless=8, seed=3)]

    class Calibration(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.left = iter(blobs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self.left, None)
            return None if blob is None else {"input.1": blob}

    with tempfile.TemporaryDirectory(prefix="centerface-int8-") as folder:
        onnx.save(model, f"{folder}/fp32.onnx")
        quantize_static(f"{folder}/fp32.onnx", f"{folder}/int8.onnx", Calibration(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        quantized = Path(f"{folder}/int8.onnx").read_bytes()
    detector = CenterFaceDetector(CenterFaceSettings(torch_threads=threads, device="cpu"))
    detector._session = onnx_session(quantized, threads, "cpu")  # the same detector on the int8 model
    return _alone(detector)


def configurations(threads: int, names: Sequence[str] | None,
                   extra: Sequence[tuple[str, list[str]]]) -> list[Configuration]:
    """The configurations compared, by name (``names``: only those), then the ``extra`` ones:
    ``default`` is ``conf/base.yaml`` as it is (the README's "The default union"), ``deface`` is
    deface 1.5.0's CenterFace and blur, ``retinaface_x2`` searches the image at scales 1 and 2."""
    from transforms.detection import (
        CenterFaceDetector,
        CenterFaceSettings,
        RetinaFaceDetector,
        RetinaFaceSettings,
        UnionDetector,
        YuNetDetector,
        YuNetSettings,
        retinaface_available,
        yunet_available,
    )

    builders: dict[str, Callable[[], Built | None]] = {
        "stock_mtcnn": lambda: job_detection(["detector=mtcnn", "detector_extra="], threads),
        "fast_mtcnn": lambda: job_detection(["detector_extra="], threads),
        "default": lambda: job_detection([], threads),
        "centerface": lambda: _alone(CenterFaceDetector(CenterFaceSettings(torch_threads=threads, device="cpu"))),
        "centerface_int8": lambda: quantized_centerface(threads),
        "deface": _deface,
    }
    if retinaface_available():
        builders |= {
            "retinaface": lambda: _alone(RetinaFaceDetector(RetinaFaceSettings(torch_threads=threads,
                                                                                device="cpu"))),
            "retinaface_x2": lambda: _alone(RetinaFaceDetector(RetinaFaceSettings(
                scales=(1.0, 2.0), torch_threads=threads, device="cpu"))),
            "centerface+retinaface": lambda: _alone(UnionDetector([
                CenterFaceDetector(CenterFaceSettings(torch_threads=threads, device="cpu")),
                RetinaFaceDetector(RetinaFaceSettings(torch_threads=threads, device="cpu"))])),
            "fast_mtcnn+retinaface": lambda: job_detection(["detector_extra=retinaface"], threads),
            "fast_mtcnn+centerface+retinaface": lambda: job_detection(["detector_extra=centerface,retinaface"],
                                                                      threads),
        }
    if yunet_available():
        builders["yunet"] = lambda: _alone(YuNetDetector(YuNetSettings()))
    for label, overrides in extra:
        builders[label] = lambda o=overrides: job_detection(o, threads)  # type: ignore[misc]
    chosen = []
    for name, build in builders.items():
        if names and name not in names and name not in dict(extra):
            continue
        if name in ONLY_WHEN_NAMED and not names:
            continue
        built = build()
        if built is None:
            print(f"{name}: not installed, skipped")
            continue
        chosen.append(Configuration(name, built[0].detect, built[1], built[2]))
    return chosen


def _jpeg(array: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95)
    return np.asarray(Image.open(buffer).convert("RGB"))


@dataclass
class Photo:
    """One WIDER photo, its boxes, the re-encode noise of each valid box and the stray zone."""

    name: str
    image: Image.Image
    valid: list[dict[str, Any]]
    noise: list[tuple[float, float]]
    stray_zone: np.ndarray  # True: farther than 2x every ground-truth box


def load_photos(wider: Path, limit: int) -> list[Photo]:
    import json

    annotations = json.loads((wider / "annotations.json").read_text())
    photos = []
    for name in sorted(annotations)[:limit]:
        image = Image.open(wider / "images" / name).convert("RGB")
        original = np.asarray(image)
        reencoded = _jpeg(original)
        height, width = original.shape[:2]
        zone = np.ones((height, width), bool)
        valid, noise = [], []
        for entry in annotations[name]:
            x1, y1, x2, y2 = entry["box"]
            w, h = x2 - x1, y2 - y1
            zone[max(0, int(y1 - h / 2)): max(0, math.ceil(y2 + h / 2)),
                 max(0, int(x1 - w / 2)): max(0, math.ceil(x2 + w / 2))] = False
            if entry.get("invalid"):
                continue
            valid.append(entry)
            noise.append(box_change(original, reencoded, int_box(entry["box"], width, height)))
        photos.append(Photo(name, image, valid, noise, zone))
    return photos


def faceless_photos() -> list[Image.Image]:
    """scikit-image's face-less photos as ``benchmarks/real_photos.py`` feeds them (quality-92 JPEG)."""
    from skimage import data as skdata

    out = []
    for name in FACELESS_PHOTOS:
        buffer = io.BytesIO()
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(buffer, "JPEG", quality=92)
        out.append(Image.open(buffer).convert("RGB"))
    return out


def _attribute_keys(entry: dict[str, Any]) -> list[str]:
    return [f"{name}={int(entry.get(name, 0))}" for name, _ in ATTRIBUTES]


def score(config: Configuration, photos: list[Photo], faceless: list[Image.Image], repeat: int) -> Scores:
    """Detect (timed), replace and score one configuration."""
    scores = Scores(images=len(photos))
    config.detect([photos[0].image])  # warm-up
    found: list[list[Face]] = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        found = [config.detect([photo.image])[0] for photo in photos]
        scores.seconds = min(scores.seconds, time.perf_counter() - started)
    for photo, faces in zip(photos, found, strict=True):
        original = np.asarray(photo.image)
        output = np.asarray(config.replaced(photo.image, faces)[0])
        changed = (np.abs(output.astype(np.int16) - original).max(axis=2) > CHANGED)
        scores.stray_pixels += int((changed & photo.stray_zone).sum())
        scores.pixels += changed.size
        encoded = _jpeg(output)
        height, width = original.shape[:2]
        for entry, (noise_mad, noise_ssim) in zip(photo.valid, photo.noise, strict=True):
            box = int_box(entry["box"], width, height)
            x1, y1, x2, y2 = entry["box"]
            keys = [band_of(min(x2 - x1, y2 - y1)), *_attribute_keys(entry)]
            hit = False
            if box[2] > box[0] and box[3] > box[1]:
                mad, ssim = box_change(original, encoded, box)
                hit = mad > 2 * noise_mad + 1 and ssim < noise_ssim - 0.15
            for key in keys:
                scores.faces[key] += 1
                scores.anonymized[key] += hit
    for image, faces in zip(faceless, [config.detect([image])[0] for image in faceless], strict=True):
        original = np.asarray(image)
        replaced, count = config.replaced(image, faces)
        changed_pixels = int((np.asarray(replaced) != original).any(axis=2).sum())
        scores.faceless_faces += count
        scores.faceless_images_changed += changed_pixels > 0
        scores.faceless_pixels_changed += changed_pixels
        scores.faceless_pixels += original.shape[0] * original.shape[1]
    return scores


def _band_row(name: str, s: Scores) -> str:
    fp = f"{s.faceless_faces}/{s.faceless_images_changed} of {len(FACELESS_PHOTOS)}/{s.faceless_pixels_changed}"
    return (f"{name:46s} " + " ".join(f"{s.recall(b):6.3f}" for b, _, _ in BANDS)
            + f" {100 * s.stray_pixels / max(1, s.pixels):7.3f} {fp:>31s} {1000 * s.seconds / s.images:7.0f}")


def print_tables(rows: list[tuple[str, Scores]]) -> None:
    bands = [name for name, _, _ in BANDS]
    first = rows[0][1]
    print("\nanonymization recall per size band (valid faces: "
          + ", ".join(f"{b} {first.faces[b]}" for b in bands) + ")")
    print(f"{'configuration':46s} " + " ".join(f"{b:>6s}" for b in bands)
          + f" {'stray %':>7s} {'FP faces/images/px (face-less)':>31s} {'ms/img':>7s}")
    for name, s in rows:
        print(_band_row(name, s))
    keys = [f"{name}={level}" for name, levels in ATTRIBUTES for level in range(levels)]
    print("\nanonymization recall per WIDER attribute level (faces: "
          + ", ".join(f"{k} {first.faces[k]}" for k in keys) + ")")
    print(f"{'configuration':46s} " + " ".join(f"{k.replace('illumination', 'illum').replace('occlusion', 'occl'):>7s}"
                                               for k in keys))
    for name, s in rows:
        print(f"{name:46s} " + " ".join(f"{s.recall(k):7.3f}" for k in keys))


def interleaved_ms(configs: Sequence[Configuration], images: Sequence[Image.Image]) -> list[float]:
    """Mean ms of each configuration's detection per image, the configurations run on each image in
    turn (the order rotated image by image), so that the machine's drift in speed reaches all alike."""
    totals = [0.0] * len(configs)
    for index, image in enumerate(images):
        shift = index % len(configs)
        for which in [*range(shift, len(configs)), *range(shift)]:
            started = time.perf_counter()
            configs[which].detect([image])
            totals[which] += time.perf_counter() - started
    return [1000 * total / max(1, len(images)) for total in totals]


def print_interleaved(configs: Sequence[Configuration], photos: Sequence[Photo], faceless: int) -> None:
    """``--interleaved``: detection time per image of every configuration, interleaved
    (``interleaved_ms``), on the WIDER photos and on ``faceless`` face-less photos rescaled to their
    sizes (``benchmarks/whole_job.py``'s mix), each against the first configuration."""
    from benchmarks.whole_job import faceless_variants

    wider = interleaved_ms(configs, [photo.image for photo in photos])
    plain = [Image.open(io.BytesIO(data)).convert("RGB")
             for _, data in faceless_variants(faceless, [photo.image.size for photo in photos])]
    without = interleaved_ms(configs, plain)
    print(f"\ndetection ms per image, interleaved ({len(photos)} WIDER photos, {len(plain)} face-less "
          f"photos at their sizes), and the ratio to {configs[0].name}:")
    for config, ms_wider, ms_plain in zip(configs, wider, without, strict=True):
        print(f"{config.name:46s} {ms_wider:7.0f} {ms_wider / wider[0]:6.3f}x {ms_plain:7.0f} "
              f"{ms_plain / without[0] if without[0] else math.nan:6.3f}x")


def _extra_config(text: str) -> tuple[str, list[str]]:
    label, _, overrides = text.partition(":")
    if not label or not overrides:
        raise argparse.ArgumentTypeError(f"expected LABEL:key=value;key=value, got {text!r}")
    return label, [o.strip() for o in overrides.split(";") if o.strip()]


def wider_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="detection.py --wider-dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider-dev", type=Path, nargs="?", const=DEFAULT_WIDER, default=DEFAULT_WIDER,
                        help="folder with images/ and annotations.json (default ../shared/data/wider-dev)")
    parser.add_argument("--generated", type=_generated_kind, default=None, metavar="hard:SEED|plain:SEED",
                        help="instead of wider-dev: the generated labelled set (120 photos with faces, 30 "
                             "without; hard: faces down to 10 px), written in its format to a temporary folder")
    parser.add_argument("--limit", type=int, default=100, help="how many WIDER photos (sorted by name)")
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime / OpenCV threads")
    parser.add_argument("--repeat", type=int, default=1, help="timing passes (best is reported)")
    parser.add_argument("--only", type=lambda t: [n.strip() for n in t.split(",") if n.strip()], default=None,
                        help="only these configurations, comma-separated: stock_mtcnn, fast_mtcnn, default, "
                             "centerface, centerface_int8 (only when named), deface, retinaface, retinaface_x2, "
                             "yunet, centerface+retinaface, fast_mtcnn+retinaface, fast_mtcnn+centerface+retinaface")
    parser.add_argument("--config", type=_extra_config, action="append", default=[], metavar="LABEL:K=V;K=V",
                        help="also the job's detector under conf/base.yaml plus these settings")
    parser.add_argument("--interleaved", type=int, default=0, metavar="N",
                        help="also time the configurations in turn on each photo, on the WIDER photos and on "
                             "N face-less photos rescaled to their sizes (same-run cost ratios)")
    args = parser.parse_args(list(argv))
    if args.generated is not None:
        with tempfile.TemporaryDirectory(prefix="generated-wider-") as folder:
            write_generated(Path(folder), *args.generated)
            return _score_configurations(args, Path(folder), limit=150)
    if not (args.wider_dev / "annotations.json").is_file():
        parser.error(f"--wider-dev {args.wider_dev}: no annotations.json")
    return _score_configurations(args, args.wider_dev, args.limit)


def _generated_kind(text: str) -> tuple[bool, int]:
    kind, _, seed = text.partition(":")
    if kind not in ("hard", "plain") or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"expected hard:SEED or plain:SEED, got {text!r}")
    return kind == "hard", int(seed)


def write_generated(folder: Path, hard: bool, seed: int) -> None:
    """The generated labelled set (``sampledata/labelled_faces.py``: 120 photos with faces, 30
    without; ``hard``: low contrast, bad exposure, blur, faces down to 10 px) in wider-dev's
    format: ``images/<name>`` and ``annotations.json`` (boxes without WIDER's attributes)."""
    import json

    from sampledata.labelled_faces import write_labelled_set

    extra: dict[str, Any] = {"smallest": 10.0} if hard else {}
    boxes_path = write_labelled_set(folder / "images", with_faces=120, faceless=30, seed=seed, hard=hard, **extra)
    boxes = json.loads(boxes_path.read_text())
    boxes_path.unlink()
    (folder / "annotations.json").write_text(json.dumps(
        {name: [{"box": box} for box in found] for name, found in boxes.items()}))


def _score_configurations(args: argparse.Namespace, photos_folder: Path, limit: int) -> int:
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    photos = load_photos(photos_folder, limit)
    faceless = faceless_photos()
    print(f"{len(photos)} WIDER photos, {sum(len(p.valid) for p in photos)} valid faces; "
          f"{len(faceless)} face-less photos; threads={args.threads}")
    rows = []
    configs = configurations(args.threads, args.only, args.config)
    for config in configs:
        rows.append((config.name, score(config, photos, faceless, args.repeat)))
        print(f"  measured: {_band_row(*rows[-1])}", flush=True)
    if rows:
        print_tables(rows)
    if args.interleaved and configs:
        print_interleaved(configs, photos, args.interleaved)
    return 0
