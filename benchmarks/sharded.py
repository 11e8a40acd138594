"""Whole-job throughput and peak memory on WebDataset tar shards, for N = 2 and N = 20 shards.

Builds N synthetic tar shards (640x480 JPEGs, half with a face, .cls/.json sidecars), runs the
job on the DirectRunner in a child process per N, and prints images/s and the child's peak RSS,
twice: the whole ``anonymize run`` (pipeline + summary + validation report) and the pipeline
alone (``pipelines.anonymize.run``). Peak RSS of the pipeline must stay flat as N grows: shards
are streamed and outputs staged before the commit.

    .venv/bin/python benchmarks/sharded.py [--shards 2 20] [--per-shard 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.datasets import write_tar_shards  # noqa: E402

PIPELINE_ONLY = """
import sys
from tests.helpers import run_job
run_job(sys.argv[1], sys.argv[2])
"""


def run_job(shards: int, per_shard: int, workdir: Path, whole_cli: bool) -> tuple[float, float]:
    """Run the job on ``shards`` tar shards; returns (images/s, peak RSS in MiB) of the child."""
    inputs = workdir / f"in-{shards}"
    if not inputs.exists():
        write_tar_shards(inputs, shards=shards, per_shard=per_shard, size=(640, 480))
    output = workdir / f"out-{shards}-{'cli' if whole_cli else 'pipeline'}"
    if whole_cli:
        command = [sys.executable, "-m", "pipelines.cli", "run", "--conf", str(ROOT / "conf" / "base.yaml"),
                   "--set", f"input={inputs}/*.tar", "--set", f"output={output}",
                   "--set", "purpose=throughput benchmark", "--set", "legal_basis=legitimate_interests",
                   "--runner=DirectRunner"]
    else:
        command = [sys.executable, "-c", PIPELINE_ONLY, f"{inputs}/*.tar", str(output)]
    log = workdir / "child.log"
    started = time.monotonic()
    with open(log, "wb") as sink:
        child = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"job failed ({status}): {log.read_text()[-2000:]}")
    return shards * per_shard / elapsed, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--per-shard", type=int, default=8)
    args = parser.parse_args()
    print(f"{'what':<14} {'shards':>6} {'images':>6} {'images/s':>9} {'peak RSS MiB':>13}")
    with tempfile.TemporaryDirectory() as folder:
        for whole_cli in (False, True):
            for shards in args.shards:
                rate, rss = run_job(shards, args.per_shard, Path(folder), whole_cli)
                what = "anonymize run" if whole_cli else "pipeline"
                print(f"{what:<14} {shards:>6} {shards * args.per_shard:>6} {rate:>9.2f} {rss:>13.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
