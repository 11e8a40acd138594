"""Whole job, images in to anonymized images out, against deface on the same JPEGs (CPU).

    python benchmarks/whole_job.py [--images 80] [--workers 2] [--faceless-share 0.83] [--configs default,reencode]
    python benchmarks/whole_job.py --wider-dev [PATH] [--limit 100] [--faceless-share 0.83] [--workers 2]
                                   [--device cpu|cuda|auto] [--batch-sizes 32,128,256] [--no-deface] [--memory]
                                   [--code DIR[,DIR...]]

``--wider-dev`` (default path ``../shared/data/wider-dev`` beside the repository): the WIDER FACE
val photos (real crowds and groups, 1024 px wide; copied to a temporary folder only, never into
the repository) mixed with face-less photos at ``--faceless-share`` (0.83, ImageNet's share: 17% of
its images show faces), so ``--limit`` 100 WIDER photos come with 488 face-less ones. The face-less
photos are made from the 16 face-less photos bundled with scikit-image (those of
``real_photos.py``): each is one of them, cropped (55-100% of each side at a seeded offset),
possibly flipped, and rescaled to the size of one of the run's WIDER photos (1024 px wide, that
photo's height), all seeded, so that every one is a distinct image of a WIDER-like size; being
rescaled, they are smoother than real photos. deface runs on the same files in the same run. Each
job is ``anonymize run`` through the CLI (a process of its own: imports, Beam and model start-up
included) with the default policy on the DirectRunner with ``--workers`` processes; with
``--batch-sizes`` once per detector batch size (``detector_batch_size``), on ``--device``
(``detector_device``), printing images/s for each. Per job it prints the outcome (published,
withheld by reason), images/s, the ratio to deface, and the time by stage in worker ms per input
image (the ``stage_us:<stage>`` distributions, ``benchmarks/stages.py``): read, decode, detect
(and each detector, over both the detect and the verify passes), replace, identity, encode,
quality metrics, verify, staging, gate, commit. Beam/model start-up is the wall time of the same
job on a single face-less photo (process, Beam, workers, model loads, gate, report), plus the
model loads RunInference reports. Each job's peak resident memory is sampled (the largest
process, and all of the job's processes together); ``--memory`` adds a job on every other image
of the mix, so that the peaks of 1 image, half the mix and the whole mix show how memory grows
with dataset size. ``--code`` (default: this checkout) runs the main job of each checkout given
(before,after: e.g. a ``git worktree`` of the old commit), each with its own ``conf/base.yaml``,
in the same run beside deface; the start-up and ``--memory`` jobs run the last one.

Generated mode (without ``--wider-dev``):

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
import itertools
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from benchmarks.memory import PeakChildMemory  # noqa: E402
from benchmarks.real_photos import (  # noqa: E402
    DEFAULT_WIDER,
    FACELESS_PHOTOS,
    copy_wider,
    published_outputs,
    run_deface,
    run_ours,
)
from benchmarks.stages import stage_rows, top_level_ms  # noqa: E402
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


def faceless_variants(count: int, sizes: Sequence[tuple[int, int]], seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` distinct face-less JPEGs (name, bytes): scikit-image's face-less photos in turn, each
    cropped to 55-100% of each side at a seeded offset, flipped left-right half of the time and upside
    down a quarter of it, and rescaled to one of ``sizes`` (the WIDER photos' sizes), quality 92."""
    import io

    from PIL import Image
    from skimage import data as skdata

    rng = random.Random(seed)
    sources = [Image.fromarray(getattr(skdata, name)()).convert("RGB") for name in FACELESS_PHOTOS]
    out: list[tuple[str, bytes]] = []
    for index in range(count):
        source = sources[index % len(sources)]
        width, height = source.size
        crop_w, crop_h = round(width * rng.uniform(0.55, 1.0)), round(height * rng.uniform(0.55, 1.0))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = source.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < 0.25:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        image = image.resize(rng.choice(list(sizes)), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        out.append((f"{FACELESS_PHOTOS[index % len(sources)]}-{index:04d}.jpg", buffer.getvalue()))
    return out


def prepare_wider_mix(wider: Path, folder: Path, limit: int, faceless_share: float) -> tuple[list[str], int]:
    """``limit`` WIDER photos and the face-less photos that make ``faceless_share`` of the mix, in
    ``folder``; returns every relative path and the number of WIDER photos."""
    from PIL import Image

    truth = copy_wider(wider, folder, limit)
    sizes = sorted({Image.open(folder / name).size for name in truth})
    count = round(len(truth) * faceless_share / (1.0 - faceless_share))
    (folder / "faceless").mkdir(parents=True, exist_ok=True)
    names = sorted(truth)
    for name, data in faceless_variants(count, sizes):
        (folder / "faceless" / name).write_bytes(data)
        names.append(f"faceless/{name}")
    return names, len(truth)


def checkout_label(code: Path) -> str:
    """A checkout in words: its folder and commit (its short hash), or its folder alone."""
    import subprocess

    done = subprocess.run(["git", "-C", str(code), "log", "-1", "--format=%h"], capture_output=True, text=True)
    return f"{code.name} {done.stdout.strip()}" if done.returncode == 0 else code.name


def model_loads(metrics: dict[str, Any]) -> str:
    """The model loads RunInference reports (detect and verify), in words."""
    parts = []
    for key, dist in (metrics.get("distributions") or {}).items():
        if key.endswith("load_model_latency_milli_secs"):
            parts.append(f"{key.split('/')[0].removeprefix('anonymize_')} {dist['count']} x "
                         f"{dist['mean'] / 1000:.1f} s")
    return ", ".join(parts) or "none reported"


def wider_dev(args: argparse.Namespace) -> int:
    """The ``--wider-dev`` benchmark (see the module's docstring); 0 when every job ran."""
    work = Path(tempfile.mkdtemp(prefix="whole-job-wider-"))
    try:
        folder = work / "in"
        names, photos = prepare_wider_mix(args.wider_dev, folder, args.limit, args.faceless_share)
        print(f"{photos} WIDER photos + {len(names) - photos} face-less photos "
              f"({(len(names) - photos) / len(names):.0%} without faces); {os.cpu_count()} cores, "
              f"{args.workers} worker processes, device {args.device}")
        rates: dict[str, float] = {}
        if not args.no_deface:
            seconds = run_deface(folder, work / "deface", names)
            if seconds is not None:
                rates["deface 1.5.0 (CenterFace + blur, 1 process)"] = len(names) / seconds
                print(f"deface 1.5.0: {seconds:.1f} s, {len(names) / seconds:.2f} images/s")
        settings = [] if args.device == "auto" else [f"detector_device={args.device}"]
        codes = [Path(c).resolve() for c in args.code.split(",") if c.strip()]
        latest = codes[-1]
        startup = math.nan
        peaks: dict[str, PeakChildMemory] = {}
        if not args.no_startup:
            one = work / "in-one"
            (one / "faceless").mkdir(parents=True)
            shutil.copyfile(folder / names[-1], one / names[-1])
            with PeakChildMemory() as memory:
                startup = run_ours(latest, one, work / "out-one", args.workers, settings)
            peaks["1 photo"] = memory
            print(f"Beam/model start-up (the same job on 1 face-less photo): {startup:.1f} s, "
                  f"{1000 * startup / len(names):.0f} ms per image of this mix")
        if args.memory:
            half = work / "in-half"
            for name in names[::2]:  # every other image: the same mix, half the size
                (half / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, half / name)
            with PeakChildMemory() as memory:
                seconds = run_ours(latest, half, work / "out-half", args.workers, settings)
            peaks[f"{len(names[::2])} images"] = memory
            print(f"half the mix ({len(names[::2])} images): {seconds:.1f} s")
        for (index, code), batch in itertools.product(enumerate(codes), args.batch_sizes or [None]):
            which = f", #{index + 1} {checkout_label(code)}" if len(codes) > 1 else ""
            label = "anonymize run, default policy" + which + (f", batch {batch}" if batch else "")
            output = work / f"out-{index}-{batch or 'default'}"
            overrides = settings + ([f"detector_batch_size={batch}"] if batch else [])
            with PeakChildMemory() as memory:
                seconds = run_ours(code, folder, output, args.workers, overrides)
            peaks[f"{len(names)} images" + which + (f", batch {batch}" if batch else "")] = memory
            outputs, reasons, _ = published_outputs(output, names)
            summary = json.loads((output / "report" / "summary.json").read_text())
            metrics = summary.get("metrics") or {}
            rates[label] = len(names) / seconds
            wider = sum(1 for name in names[:photos] if outputs[name] is not None)
            faceless = sum(1 for name in names[photos:] if outputs[name] is not None)
            print(f"\n== {label} ({args.workers} workers): {seconds:.1f} s, {rates[label]:.2f} images/s "
                  f"(start-up included)")
            print(f"published: WIDER {wider}/{photos}, face-less {faceless}/{len(names) - photos}; "
                  f"withheld: {dict(reasons) or 'none'}; model loads: {model_loads(metrics)}")
            rows = stage_rows(metrics, len(names))
            print("time by stage, worker ms per input image:")
            for name, ms in rows:
                print(f"  {name:52} {ms:8.1f}")
            print(f"  {'sum of the stages':52} {top_level_ms(rows):8.1f}")
            print(f"  {'worker time available (wall x workers)':52} {1000 * seconds * args.workers / len(names):8.1f}")
            print(f"  {'start-up (1-photo job wall x workers)':52} "
                  f"{1000 * startup * args.workers / len(names):8.1f}")
        if peaks:
            print("\npeak resident memory (sampled every 0.5 s; the CLI process and its Beam workers):")
            for name, memory in peaks.items():
                print(f"  {name:30} largest process {memory.peak_mb:7.0f} MB, "
                      f"all processes {memory.peak_total_mb:7.0f} MB")
        print()
        for name, rate in rates.items():
            print(f"{name:60} {rate:7.2f} images/s")
        deface = next((rate for name, rate in rates.items() if name.startswith("deface")), None)
        if deface:
            for name, rate in rates.items():
                if not name.startswith("deface"):
                    print(f"ratio to deface, {name}: {rate / deface:.2f}x")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=80, help="N: generated 640x480 images, all with faces")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    parser.add_argument("--shard-size", type=int, default=10, help="images per shard (shards are the unit of work)")
    parser.add_argument("--faceless-share", type=float, default=None,
                        help="share of images without a face (default 0, 0.83 with --wider-dev)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"which of {', '.join(CONFIGS)} to run")
    parser.add_argument("--wider-dev", type=Path, nargs="?", const=DEFAULT_WIDER, default=None,
                        help=f"real photos instead of generated ones (default path {DEFAULT_WIDER})")
    parser.add_argument("--limit", type=int, default=100, help="--wider-dev: how many WIDER photos (sorted by name)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="--wider-dev: detector_device of the jobs")
    parser.add_argument("--batch-sizes", default="",
                        help="--wider-dev: detector batch sizes, comma-separated, one job each (e.g. 32,128,256)")
    parser.add_argument("--no-deface", action="store_true", help="--wider-dev: skip deface")
    parser.add_argument("--no-startup", action="store_true", help="--wider-dev: skip the 1-photo start-up job")
    parser.add_argument("--code", default=str(ROOT),
                        help="--wider-dev: checkouts whose job to run, comma-separated (before,after)")
    parser.add_argument("--memory", action="store_true",
                        help="--wider-dev: also a job on half the mix, to compare peak memory by dataset size")
    args = parser.parse_args(argv)
    if args.wider_dev is not None:
        args.faceless_share = 0.83 if args.faceless_share is None else args.faceless_share
        try:
            args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
        except ValueError:
            parser.error(f"--batch-sizes {args.batch_sizes!r}: integers, comma-separated")
        if any(b < 1 for b in args.batch_sizes) or args.limit < 1 or not 0.0 <= args.faceless_share < 1.0:
            parser.error("--batch-sizes and --limit must be >= 1, --faceless-share in [0, 1)")
        if not (args.wider_dev / "annotations.json").is_file():
            parser.error(f"--wider-dev {args.wider_dev}: no annotations.json")
        logging.disable(logging.WARNING)
        return wider_dev(args)
    args.faceless_share = args.faceless_share or 0.0
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
