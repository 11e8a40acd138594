"""Detector-stage throughput on CPU: torch threads against processes.

Runs the configured MTCNN detector (stock, or ``--detector fast_mtcnn``) on the same 640x480
JPEGs (half with a face) through the pipeline's own handler code (decode + detect), in:
  - 1 process x 1 thread, 1 process x N threads (N = cores), and N processes x 1 thread.
Prints images/s for each, so the choice "workers x threads never exceeds the cores, one thread
per worker" is backed by a number on this machine.

    .venv/bin/python benchmarks/throughput.py [--images 48] [--batch 8] [--detector mtcnn]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _images(count: int) -> list[bytes]:
    from tests.datasets import face_photo, jpeg

    return [jpeg(face_photo(i, (640, 480))) for i in range(count)]


def _detect_all(args: tuple[list[bytes], int, int, str]) -> float:
    """Decode and detect every image in batches; returns seconds spent (model load excluded)."""
    images, threads, batch, detector = args
    import torch

    torch.set_num_threads(threads)
    from transforms.decode import load_normalized
    from transforms.detection import MtcnnDetector, MtcnnSettings

    model: object
    if detector == "fast_mtcnn":
        from transforms.detection import FastMtcnnDetector, FastMtcnnSettings

        model = FastMtcnnDetector(FastMtcnnSettings(torch_threads=threads))
    else:
        model = MtcnnDetector(MtcnnSettings(torch_threads=threads))
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        decoded = [load_normalized(data, 10**8)[0] for data in images[start:start + batch]]
        model.detect(decoded)  # type: ignore[attr-defined]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--detector", default="mtcnn", choices=["mtcnn", "fast_mtcnn"])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    images = _images(args.images)
    print(f"detector {args.detector}, {args.images} images 640x480, batch {args.batch}, {cores} cores")
    print(f"{'layout':<28} {'images/s':>9}")
    for threads in sorted({1, cores}):
        seconds = _detect_all((images, threads, args.batch, args.detector))
        print(f"{f'1 process x {threads} thread(s)':<28} {len(images) / seconds:>9.2f}", flush=True)
    if cores > 1:
        parts = [images[i::cores] for i in range(cores)]
        context = multiprocessing.get_context("spawn")
        with context.Pool(cores) as pool:
            seconds_each = pool.map(_detect_all, [(part, 1, args.batch, args.detector) for part in parts])
        # The processes run side by side: the slowest one's detection time (model load excluded,
        # as above) is the wall time of the stage.
        print(f"{f'{cores} processes x 1 thread':<28} {len(images) / max(seconds_each):>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
