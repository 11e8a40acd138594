"""The launcher's progress bar reads progress from the output itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.progress import ProgressBar
from transforms.storage import DEFAULT_STORAGE


def test_progress_bar_counts_committed_shards_and_staged_images(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    staging = tmp_path / "_staging" / "run1" / "shard-a"
    staging.mkdir(parents=True)
    (tmp_path / "manifest").mkdir()
    with ProgressBar(str(tmp_path), DEFAULT_STORAGE, "run1", total_shards=3, already_committed=1, interval=0.05,
                     enabled=True):
        for i in range(3):
            (staging / f"{i:09d}").write_bytes(b"x")
        (tmp_path / "manifest" / "shard-a.parquet").write_bytes(b"")
        (tmp_path / "manifest" / "shard-b.parquet").write_bytes(b"")
    err = capsys.readouterr().err
    assert "2/3" in err and "images 3" in err and "img/s" in err
    with pytest.raises(ValueError, match="interval"):
        ProgressBar(str(tmp_path), DEFAULT_STORAGE, "run1", 1, 0, interval=0)
