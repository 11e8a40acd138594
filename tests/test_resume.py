"""Crash and resume: SIGKILL part-way through a multi-shard run, then re-run.

Every input record ends up exactly once in the manifests, no partial or duplicate shard exists,
and shards committed before the crash are not rewritten.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.datasets import write_tar_shards
from tests.helpers import ACCOUNTABILITY_SETS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SHARDS, PER_SHARD = 4, 2


def _command(input_glob: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "run", "--conf", str(ROOT / "conf" / "base.yaml"),
            "--set", f"input={input_glob}", "--set", f"output={output}", *ACCOUNTABILITY_SETS,
            "--runner=DirectRunner"]


def _run(input_glob: str, output: Path, failpoint: str = "") -> int:
    env = dict(os.environ, ANONYMIZE_FAILPOINT=failpoint)
    return subprocess.run(_command(input_glob, output), cwd=ROOT, env=env, capture_output=True,
                          timeout=600).returncode


def _fingerprints(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in folder.rglob("*") if p.is_file()}


def _manifests(output: Path) -> set[str]:
    return {p.stem for p in (output / "manifest").glob("*.parquet")} if (output / "manifest").exists() else set()


def _assert_complete(output: Path, inputs: Path) -> None:
    table = pq.read_table(output / "manifest").to_pylist()
    expected = sorted(f"{p}#sample{s:03d}{i:03d}" for s, p in enumerate(sorted(inputs.glob("*.tar")))
                      for i in range(PER_SHARD))
    assert sorted(row["source_uri"] for row in table) == expected  # each record exactly once
    assert all(row["status"] == "published" for row in table)
    data = sorted(p.name for p in (output / "data").iterdir())
    assert data == [f"shard-{s:06d}.tar" for s in range(SHARDS)]  # no partial, no duplicate shard
    for name in data:
        with tarfile.open(output / "data" / name) as tar:
            assert len(tar.getmembers()) == PER_SHARD * 3  # whole: every sample, every sidecar
    assert not (output / "_staging").exists()
    assert not list(output.rglob(".anonymize-partial-*"))


def test_killed_after_commits_resumes_without_rewriting(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_tar_shards(inputs, shards=SHARDS, per_shard=PER_SHARD)
    output = tmp_path / "out"
    pattern = str(inputs / "*.tar")

    assert _run(pattern, output, failpoint="after_commit:2") == -signal.SIGKILL
    committed = _manifests(output)
    assert len(committed) == 2
    before = {k: v for k, v in _fingerprints(output).items()
              if any(k in (f"manifest/{s}.parquet", f"data/{s}.tar") for s in committed)}
    assert len(before) == 4

    # Killed again, after writing a third shard's data but before its manifest (its commit).
    assert _run(pattern, output, failpoint="before_manifest:1") == -signal.SIGKILL
    assert len(_manifests(output)) == 2

    assert _run(pattern, output) == 0
    assert len(_manifests(output)) == SHARDS
    after = _fingerprints(output)
    assert {k: after[k] for k in before} == before  # committed shards were not rewritten
    _assert_complete(output, inputs)


def test_sigkill_mid_processing_leaves_nothing_visible_and_reruns(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_tar_shards(inputs, shards=SHARDS, per_shard=PER_SHARD)
    output = tmp_path / "out"
    process = subprocess.Popen(_command(str(inputs / "*.tar"), output), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (output / "_staging").exists() or not list((output / "_staging").rglob("0*")):
        assert process.poll() is None and time.monotonic() < deadline, "job ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not _manifests(output)
    assert not (output / "data").exists() or not list((output / "data").iterdir())

    assert _run(str(inputs / "*.tar"), output) == 0
    _assert_complete(output, inputs)
