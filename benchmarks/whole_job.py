"""Whole job, images in to anonymized images out, against deface on the same JPEGs (CPU).

    python benchmarks/whole_job.py [--images 80] [--workers 2] [--faceless-share 0.83] [--configs default,reencode]

Writes the generated labelled set's 640x480 JPEGs (faces of 16-300 px, ``sampledata/labelled_faces.py``;
``--faceless-share`` of them without a face: 0.83 is ImageNet's share, 17% of its images show faces)
to two folders, N and 2N images, and times each configuration on both, in one run. It prints the
wall time of each, the images/s over 2N, and the steady-state images/s, N / (time(2N) - time(N)):
a job's fixed cost (worker start-up, imports, model loads: several seconds per process) cancels
out, which is what a job of many images runs at. Configurations:

- deface 1.5.0's own per-image path (``deface.deface.image_detect``: read, CenterFace, blur 1.3x
  its boxes, write), one process, its default threads; needs
  ``pip install --no-deps deface==1.5.0 imageio-ffmpeg`` (not a dependency of this project);
- ``anonymize run`` (``pipelines.anonymize.run``) with the base config on the DirectRunner with
  ``--workers`` processes of one torch thread each and ``--shard-size`` images per shard: the
  default policy (``default``: detect with fast_mtcnn+centerface, replace, strip metadata, verify
  by re-detection, identity evidence, quality metrics, gate, manifest; face-less JPEGs keep their
  compressed data and their verification reuses the detection run on the same pixels), then
  ``reencode``: ``keep_unchanged_jpeg=false`` (every output re-encoded and re-detected), then
  ``no-identity``: without the identity check, ``no-centerface``: also without CenterFace, and
  ``mtcnn``: that with ``detector: mtcnn`` (facenet-pytorch's).

Wall time per configuration includes Beam's start-up and the run summary, not the launcher's imports.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from pipelines.anonymize import run  # noqa: E402
from pipelines.config import build_options  # noqa: E402
from sampledata.labelled_faces import generate_labelled_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "default": ("anonymize run, default policy", []),
    "reencode": ("anonymize run, keep_unchanged_jpeg=false", ["keep_unchanged_jpeg=false"]),
    "no-identity": ("anonymize run, identity_check=false", ["identity_check=false"]),
    "no-centerface": ("anonymize run, identity_check=false, no centerface",
                      ["identity_check=false", "detector_extra=''"]),
    "mtcnn": ("anonymize run, identity_check=false, no centerface, detector=mtcnn",
              ["identity_check=false", "detector_extra=''", "detector=mtcnn"]),
}


def time_deface(inputs: list[Path], output: Path) -> float | None:
    """Seconds for deface's image path over ``inputs``; None when deface cannot be imported."""
    try:
        from deface.centerface import CenterFace
        from deface.deface import image_detect
    except ImportError as error:
        print(f"deface baseline skipped ({error}); pip install --no-deps deface==1.5.0 imageio-ffmpeg")
        return None
    output.mkdir(parents=True)
    started = time.perf_counter()
    centerface = CenterFace(in_shape=None, backend="auto")
    for path in inputs:
        image_detect(str(path), str(output / path.name), centerface, threshold=0.2, replacewith="blur",
                     mask_scale=1.3, ellipse=True, draw_scores=False, enable_preview=False,
                     keep_metadata=False)
    return time.perf_counter() - started


def time_ours(folder: Path, output: Path, workers: int, shard_size: int,
              overrides: list[str]) -> tuple[float, dict[str, int]]:
    """Seconds for ``anonymize run`` over ``folder``, and the manifest's count per status or reason."""
    settings = [f"input={folder}", f"output={output}", "purpose=whole-job benchmark",
                "legal_basis=legitimate_interests", f"shard_size={shard_size}", *overrides]
    options, _ = build_options([str(ROOT / "conf" / "base.yaml")], settings,
                               ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                                f"--direct_num_workers={workers}"])
    started = time.perf_counter()
    run(options=options)
    elapsed = time.perf_counter() - started
    import pyarrow.parquet as pq

    outcomes: dict[str, int] = {}
    for row in pq.read_table(output / "manifest").to_pylist():
        key = "published" if row["status"] == "published" else row["reason"]
        outcomes[key] = outcomes.get(key, 0) + 1
    return elapsed, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=80, help="N: generated 640x480 images, all with faces")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    parser.add_argument("--shard-size", type=int, default=10, help="images per shard (shards are the unit of work)")
    parser.add_argument("--faceless-share", type=float, default=0.0, help="share of images without a face")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"which of {', '.join(CONFIGS)} to run")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in CONFIGS]
    if unknown or not 0.0 <= args.faceless_share < 1.0:
        parser.error(f"unknown --configs {unknown} or --faceless-share outside [0, 1)")
    logging.disable(logging.WARNING)  # the DirectRunner's per-worker option warnings
    folder = Path(tempfile.mkdtemp(prefix="whole-job-"))
    try:
        # Two inputs, N and 2N images (the first N shared): a job's fixed cost (process start-up,
        # imports, model loads) cancels out of the difference, which gives the steady-state rate
        # that a large job runs at.
        small, large = folder / "in-small", folder / "in-large"
        small.mkdir()
        large.mkdir()
        faceless = round(2 * args.images * args.faceless_share)
        items = list(generate_labelled_set(with_faces=2 * args.images - faceless, faceless=faceless))
        random.Random(0).shuffle(items)  # both sets get the same mix
        for index, (labelled, data) in enumerate(items):
            (large / labelled.name).write_bytes(data)
            if index < args.images:
                (small / labelled.name).write_bytes(data)
        print(f"{args.images} and {2 * args.images} JPEGs of 640x480, {args.faceless_share:.0%} of them without "
              f"a face, the others with 1-3 faces each; {os.cpu_count()} cores")
        print(f"{'':75} {'N s':>6} {'2N s':>6} {'2N images/s':>12} {'steady images/s':>16}")
        steady: dict[str, float] = {}

        def report(name: str, seconds_small: float, seconds_large: float, note: str = "") -> None:
            steady[name] = args.images / max(seconds_large - seconds_small, 1e-9)
            print(f"{name:75} {seconds_small:6.1f} {seconds_large:6.1f} {2 * args.images / seconds_large:12.2f} "
                  f"{steady[name]:16.2f} {note}")

        times = [time_deface(sorted(source.iterdir()), folder / f"deface-{source.name}") for source in (small, large)]
        if times[0] is not None and times[1] is not None:
            report("deface 1.5.0 (CenterFace + blur, 1 process)", times[0], times[1])
        runs = {CONFIGS[key][0]: CONFIGS[key][1] for key in chosen}
        for index, (name, overrides) in enumerate(runs.items()):
            seconds_small, _ = time_ours(small, folder / f"out-{index}-small", args.workers, args.shard_size, overrides)
            seconds_large, outcomes = time_ours(large, folder / f"out-{index}-large", args.workers, args.shard_size,
                                                overrides)
            report(f"{name} ({args.workers} workers)", seconds_small, seconds_large, f"2N: {outcomes}")
        deface = steady.get("deface 1.5.0 (CenterFace + blur, 1 process)")
        if deface:
            for name, rate in steady.items():
                print(f"steady-state ratio to deface, {name}: {rate / deface:.2f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
