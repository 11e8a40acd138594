"""An unexpected failure of one record in any per-record stage quarantines that record only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fakes import FixedBoxesFactory
from tests.helpers import jpeg_bytes, run_job
from transforms.failures import FAULT_VARIABLE, InjectedFault, quarantine_failures
from transforms.records import Record


class _Doubler:
    @quarantine_failures("double")
    def process(self, record: Record) -> list[Record]:
        if record.relative_path == "bad":
            return [record, record.replace(index=1 / 0)]  # fails after a first output
        return [record, record]


def test_a_failing_record_yields_its_quarantine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = (Record("s", 0, name, "u", name, "", b"x") for name in ("good", "bad"))
    assert list(_Doubler().process(good)) == [good, good]
    (out,) = list(_Doubler().process(bad))
    assert out.is_quarantined and out.reason == "internal:double:ZeroDivisionError" and out.data == b""
    monkeypatch.setenv(FAULT_VARIABLE, "double:good")
    (out,) = list(_Doubler().process(good))
    assert out.reason == f"internal:double:{InjectedFault.__name__}"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["decode", "replace", "verify"])
def test_a_failure_in_any_stage_quarantines_that_record_and_the_run_goes_on(
        stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        pixels = np.full((60, 80, 3), 60 + 40 * i, np.uint8)
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(Image.fromarray(pixels)))
    monkeypatch.setenv(FAULT_VARIABLE, f"{stage}:1.jpg")
    rows = run_job(str(folder), str(tmp_path / "out"), detector_factory=FixedBoxesFactory([(10, 10, 40, 50, 0.99)]),
                   verify_factory=FixedBoxesFactory(), identity_check=False, shard_size=3).to_pylist()
    outcome = {row["relative_path"]: (row["status"], row["reason"]) for row in rows}
    assert outcome == {"0.jpg": ("published", None), "1.jpg": ("quarantined", f"internal:{stage}:InjectedFault"),
                       "2.jpg": ("published", None)}
    assert sorted(p.name for p in (tmp_path / "out" / "data").iterdir()) == ["0.jpg", "2.jpg"]
