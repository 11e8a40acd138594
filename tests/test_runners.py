"""The same sharded job on three real runners gives the same outputs and manifests.

Single-process DirectRunner (the reference), the DirectRunner in multi-processing mode with two
workers (conf/runner/direct.yaml), and the portable path (conf/runner/portable.yaml): Beam's job
service and an SDK worker pool started here as separate processes on 127.0.0.1, as on Flink.
Each run goes to the same output path (then moved aside), so manifests compare byte for byte
apart from the run id and the timestamp. The launcher prints the runner's Beam metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.options import SPECS_BY_NAME
from tests.datasets import write_tar_shards

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SHARDS, PER_SHARD = 3, 2
VARYING = {"run_id", "processed_at"}


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the pool starts workers with the `python` on PATH
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                GX_ANALYTICS_ENABLED="false")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"service on port {port} exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runners")
    write_tar_shards(folder / "in", shards=SHARDS, per_shard=PER_SHARD)
    return folder


def _run(work: Path, name: str, *flags: str) -> tuple[Path, str]:
    """Run the launcher into ``work/out``, move the output to ``work/<name>``; returns it and stdout."""
    output = work / "out"
    shutil.rmtree(output, ignore_errors=True)
    settings = [f"input={work / 'in' / '*.tar'}", f"output={output}", "identity_check=false"]
    if "purpose" in SPECS_BY_NAME:  # the record of processing needs a purpose and legal basis
        settings += ["purpose=runner equivalence test", "legal_basis=legitimate_interests"]
    command = [sys.executable, "-m", "pipelines.cli", "run", "--conf", str(ROOT / "conf" / "base.yaml"),
               *[arg for setting in settings for arg in ("--set", setting)], *flags]
    done = subprocess.run(command, cwd=work, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.rmtree(work / name, ignore_errors=True)
    output.rename(work / name)
    return work / name, done.stdout


def _manifest(output: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(output / "manifest").to_pylist()
    return {row["record_id"]: {k: v for k, v in row.items() if k not in VARYING} for row in rows}


def _data(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output / "data")): p.read_bytes() for p in (output / "data").rglob("*") if p.is_file()}


def _metrics(output: Path) -> dict[str, Any]:
    return dict(json.loads((output / "report" / "summary.json").read_text())["metrics"])


def _jpeg_bytes(work: Path) -> int:
    total = 0
    for path in (work / "in").glob("*.tar"):
        with tarfile.open(path) as tar:
            total += sum(member.size for member in tar.getmembers() if member.name.endswith(".jpg"))
    return total


@pytest.fixture(scope="module")
def reference(work: Path) -> Path:
    output, stdout = _run(work, "single", "--runner=DirectRunner")
    metrics = _metrics(output)
    counters = metrics["counters"]
    assert counters["images_read"] == SHARDS * PER_SHARD
    assert counters["bytes_read"] == _jpeg_bytes(work)
    assert counters["images_published"] + counters.get("images_quarantined", 0) == SHARDS * PER_SHARD
    assert counters["faces_found"] == sum(len(row["faces"]) for row in _manifest(output).values()) >= 3
    assert counters["shards_committed"] == SHARDS
    assert metrics["distributions"]["anonymize_detect/inference_batch_latency_micro_secs"]["count"] >= 1
    assert f"images_read {SHARDS * PER_SHARD}" in stdout and "detect latency per batch" in stdout
    return output


def _assert_same(reference: Path, other: Path) -> None:
    assert _data(other) == _data(reference)
    assert len(_data(reference)) == SHARDS
    assert _manifest(other) == _manifest(reference)
    assert len(_manifest(reference)) == SHARDS * PER_SHARD


def test_multiprocess_direct_runner_matches_single_process(work: Path, reference: Path) -> None:
    output, stdout = _run(work, "multi", "--conf", str(ROOT / "conf" / "runner" / "direct.yaml"))
    _assert_same(reference, output)
    metrics = _metrics(output)
    assert metrics["counters"]["images_read"] == SHARDS * PER_SHARD
    # The detector loads once per worker process (2 workers), not once per bundle or per shard.
    loads = metrics["distributions"]["anonymize_detect/load_model_latency_milli_secs"]["count"]
    assert 1 <= loads <= 2
    assert "detector loads" in stdout


@pytest.fixture()
def portable_services(work: Path) -> Iterator[tuple[int, int]]:
    job_port, pool_port = _free_port(), _free_port()
    commands = [
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
    ]
    logs = [open(work / f"service{i}.log", "wb") for i in range(2)]  # noqa: SIM115 - closed below
    processes = [subprocess.Popen(cmd, cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True) for cmd, log in zip(commands, logs, strict=True)]
    try:
        for port, process in zip((job_port, pool_port), processes, strict=True):
            _wait_for_port(port, process)
        yield job_port, pool_port
    finally:
        for process in processes:  # the pool's SDK workers are in its process group
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        for log in logs:
            log.close()


def test_portable_runner_matches_single_process(work: Path, reference: Path,
                                                portable_services: tuple[int, int]) -> None:
    job_port, pool_port = portable_services
    # The portable run also shares each detector across the worker's processes (GPU setting).
    output, _ = _run(work, "portable", "--conf", str(ROOT / "conf" / "runner" / "portable.yaml"),
                     "--set", "detector_share_across_processes=true",
                     f"--job_endpoint=localhost:{job_port}", f"--environment_config=localhost:{pool_port}")
    _assert_same(reference, output)
    counters = _metrics(output)["counters"]  # metrics come back through the job service
    assert counters["images_read"] == SHARDS * PER_SHARD
    assert counters["shards_committed"] == SHARDS
