"""Soak: a few hundred generated images over several shards, SIGKILLed at seeded random points
(failpoints in the commit and the data writer, and timed kills), re-run until a run completes.
Exactly once over every record, no data file without a manifest row, no staging left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.helpers import ACCOUNTABILITY_SETS, BASE_CONF

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
IMAGES, SHARD_SIZE = 240, 30
SEED = int(os.environ.get("ANONYMIZE_SOAK_SEED", "17"))  # another seed soaks other kill points
KILLS, BUDGET_S = 4, 90.0  # killed runs at most, and the time they may take; then one clean run
FAILPOINTS = ("image_written", "before_manifest", "after_commit")


def _dataset(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    for n in range(IMAGES):
        sub = folder / f"part{n % 3}"
        sub.mkdir(exist_ok=True)
        pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{n:04d}.jpg", "JPEG", quality=80)
    return sorted(str(p) for p in folder.rglob("*.jpg"))


def _run(source: Path, output: Path, failpoint: str = "", kill_after: float | None = None) -> int:
    command = [sys.executable, "-m", "tests.soak_worker", "run", "--conf", BASE_CONF, *ACCOUNTABILITY_SETS,
               "--set", f"input={source}", "--set", f"output={output}", "--set", f"shard_size={SHARD_SIZE}",
               "--set", "identity_check=false", "--set", "detector_extra=", "--runner=DirectRunner"]
    env = dict(os.environ, ANONYMIZE_FAILPOINT=failpoint, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = process.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        return -signal.SIGKILL
    assert process.returncode in (0, -signal.SIGKILL), err.decode()[-3000:]
    return process.returncode


def test_killed_at_random_points_and_rerun_until_done_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    inputs = _dataset(source)
    rng = random.Random(SEED)
    started, kills, code = time.monotonic(), 0, None
    while kills < KILLS and time.monotonic() - started < BUDGET_S:
        left = IMAGES // SHARD_SIZE - len(list((output / "manifest").glob("*.parquet")))
        if left == 0:
            break
        point = rng.choice(FAILPOINTS)
        if rng.random() < 0.25:  # a kill on a timer: start-up, planning, staging or a commit
            code = _run(source, output, kill_after=rng.uniform(6.0, 20.0))
        else:  # a failpoint the run is sure to reach (shards and files are left to write)
            most = left * SHARD_SIZE if point == "image_written" else left
            code = _run(source, output, failpoint=f"{point}:{rng.randint(1, most)}")
        if code == 0:
            break
        kills += 1
    if code != 0:
        assert _run(source, output) == 0
    print(f"soak seed {SEED}: {kills} killed runs, then a complete one, in {time.monotonic() - started:.0f} s")
    assert kills >= 2, "too few kills landed to soak anything"

    rows = pq.read_table(output / "manifest").to_pylist()
    assert sorted(r["source_uri"] for r in rows) == inputs  # every record exactly once
    assert len({r["record_id"] for r in rows}) == IMAGES
    assert all(r["status"] == "published" for r in rows), {r["reason"] for r in rows}
    data = output / "data"
    assert {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()} == {r["relative_path"] for r in rows}
    assert not (output / "_staging").exists()
    assert not [p for p in output.rglob(".anonymize-partial-*")]
    assert len(list((output / "manifest").glob("*.parquet"))) == IMAGES // SHARD_SIZE
