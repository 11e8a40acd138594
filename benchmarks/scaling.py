"""Scaling on one machine: the same job with 1 and 2 DirectRunner worker processes.

    python benchmarks/scaling.py [--images 200] [--shards 8] [--workers 1,2]

200 images of 320x240 (half with a face) in WebDataset tar shards, the base config with
``identity_check: false``, ``--direct_running_mode=multi_processing``; prints wall time,
images/s per worker count and the ratio to one worker. The wall time is the pipeline run only
(planning, config and the run summary are not timed). Other load on the machine skews it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from benchmarks.memory import PeakChildMemory  # noqa: E402
from pipelines.anonymize import run  # noqa: E402
from pipelines.config import build_options  # noqa: E402
from pipelines.options import SPECS_BY_NAME  # noqa: E402
from tests.datasets import write_tar_shards  # noqa: E402
from transforms.observability import metrics_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_once(input_glob: str, output: Path, workers: int) -> tuple[float, dict]:
    settings = [f"input={input_glob}", f"output={output}", "identity_check=false"]
    if "purpose" in SPECS_BY_NAME:
        settings += ["purpose=scaling benchmark", "legal_basis=legitimate_interests"]
    options, _ = build_options([str(ROOT / "conf" / "base.yaml")], settings,
                               ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                                f"--direct_num_workers={workers}"])
    started = time.perf_counter()
    result, _ = run(options=options)
    elapsed = time.perf_counter() - started
    return elapsed, metrics_summary(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="scaling-"))
    try:
        per_shard = args.images // args.shards
        write_tar_shards(folder / "in", shards=args.shards, per_shard=per_shard)
        images = per_shard * args.shards
        print(f"{images} images (320x240, half with a face) in {args.shards} tar shards; "
              f"{os.cpu_count()} cores; torch threads per worker: 1")
        rates: dict[int, float] = {}
        for workers in counts:
            output = folder / f"out-{workers}"
            with PeakChildMemory() as memory:
                elapsed, metrics = run_once(str(folder / "in" / "*.tar"), output, workers)
            rates[workers] = images / elapsed
            read = metrics["counters"].get("images_read")
            detect = metrics["distributions"].get("anonymize_detect/inference_batch_latency_micro_secs", {})
            loads = metrics["distributions"].get("anonymize_detect/load_model_latency_milli_secs", {})
            print(f"workers {workers}: {elapsed:.1f} s, {rates[workers]:.2f} images/s "
                  f"(images_read {read}, detect batch mean {detect.get('mean', 0) / 1000:.0f} ms, "
                  f"detector loads {loads.get('count', 0)}, peak RSS per worker process {memory.peak_mb:.0f} MB)")
            shutil.rmtree(output)
        base = rates[counts[0]]
        for workers in counts[1:]:
            print(f"ratio {workers} workers / {counts[0]}: {rates[workers] / base:.2f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
