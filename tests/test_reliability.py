"""Lose nothing, delete nothing: crashes, changed inputs, overlapping paths, concurrent runs and
output locations that cannot be written (issue 17). Runs use the fixed-box test detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.cli import main
from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY_SETS, BASE_CONF, run_job

FAST = {"identity_check": False, "detector_extra": ""}


def _images(folder: Path, names: list[str], size: tuple[int, int] = (64, 48)) -> list[Path]:
    """Small face-less JPEGs with distinct pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, name in enumerate(names):
        rng = np.random.default_rng(n)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")
        paths.append(path)
    return paths


def _job(source: Path | str, output: Path | str, **settings: Any) -> list[dict[str, Any]]:
    table = run_job(str(source), str(output), FixedBoxesFactory(), FixedBoxesFactory(), **(FAST | settings))
    return list(table.to_pylist())


def _data_files(output: Path) -> set[str]:
    data = output / "data"
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()} if data.exists() else set()


def _cli(source: Path | str, output: Path | str, *sets: str) -> list[str]:
    args = ["run", "--conf", BASE_CONF, *ACCOUNTABILITY_SETS, "--set", f"input={source}",
            "--set", f"output={output}", "--set", "identity_check=false", "--set", "detector_extra="]
    return [*args, *(arg for s in sets for arg in ("--set", s))]


def test_excluded_record_left_by_a_crashed_attempt_is_removed_at_commit(tmp_path: Path) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    paths = _images(source, ["a.jpg", "b.jpg", "c.jpg"])
    _job(source, output)
    # What a kill between a shard's data and its manifest leaves (ANONYMIZE_FAILPOINT=before_manifest):
    # the images written, no manifest.
    for manifest in (output / "manifest").glob("*.parquet"):
        manifest.unlink()
    rows = {Path(r["source_uri"]).name: r for r in _job(source, output, exclude_source_uris=str(paths[1]))}
    assert rows["b.jpg"]["status"] == "excluded"
    assert _data_files(output) == {"a.jpg", "c.jpg"}  # data/ holds exactly the published records
    # An output an older version left in that state: erasure removes the file too.
    (output / "data" / "b.jpg").write_bytes(paths[1].read_bytes())
    assert main(["erase", str(output), "--source-uri", str(paths[1])]) == 0
    assert _data_files(output) == {"a.jpg", "c.jpg"}
