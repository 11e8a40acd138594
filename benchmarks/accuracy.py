"""Extra time per image of the accuracy-impact work, on this machine's CPU.

Prints, per image of the demo dataset (built if missing): the per-image quality metrics (decode
of the output + PSNR/SSIM, always on), the reference views (resize + crop of both images, for
sampled records), and the reference model (MobileNetV2, original + anonymized in one batch).

    .venv/bin/python benchmarks/accuracy.py [--threads 1] [--batch 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sampledata.demo import build_demo_dataset
from transforms.accuracy import ReferenceSpec, pack_views, unpack_views
from transforms.decode import load_normalized
from transforms.metadata import encode_clean
from transforms.metrics import image_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="records per model batch (2 images each)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp()) / "images"
    build_demo_dataset(folder)
    images = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        image, fmt = load_normalized(data, 10**8)
        encoded, _ = encode_clean(image, data, fmt, 95)
        images.append((image, encoded))
    sizes = [f"{im.width}x{im.height}" for im, _ in images]
    print(f"{len(images)} demo images ({', '.join(sizes)}), torch threads {args.threads}")

    def per_image(fn: object) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            for image, encoded in images:
                fn(image, encoded)  # type: ignore[operator]
            best = min(best, (time.perf_counter() - start) / len(images))
        return best * 1000

    quality_ms = per_image(lambda im, enc: image_quality(im, load_normalized(enc, 10**8)[0], [(10, 10, 60, 60)]))
    views = [pack_views(im, load_normalized(enc, 10**8)[0]) for im, enc in images]
    views_ms = per_image(lambda im, enc: pack_views(im, im))
    model = ReferenceSpec("mobilenet_v2", torch_threads=args.threads).load()
    batch = np.concatenate([unpack_views(v) for v in (views * (args.batch // len(views) + 1))[:args.batch]])
    model.top_k(batch)  # warm-up
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        model.top_k(batch)
        best = min(best, (time.perf_counter() - start) / args.batch)
    model_ms = best * 1000
    print(f"quality metrics (output decode + PSNR/SSIM x2), every record: {quality_ms:.1f} ms/image")
    print(f"reference views (resize + crop of both), sampled records:    {views_ms:.1f} ms/image")
    print(f"reference model (2 x MobileNetV2 224px, batch {args.batch} records): {model_ms:.1f} ms/image")
    total = quality_ms + views_ms + model_ms
    print(f"total extra with the reference model on every record:        {total:.1f} ms/image")


if __name__ == "__main__":
    main()
