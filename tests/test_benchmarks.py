"""The detection benchmark runs end to end on a tiny generated set and prints a row per detector."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_detection_benchmark_prints_every_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    detection = _load("detection")
    assert detection.main(["--generate", "4", "--faceless", "1", "--repeat", "1",  # type: ignore[attr-defined]
                           "--batch-sizes", "1,2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[0].strip(): line.split() for line in out.splitlines()
            if "|" in line and not line.startswith("recall by box")}
    assert any(name.startswith("stock_mtcnn") for name in rows)
    assert "fast_mtcnn (min 20, batch 1)" in rows and "fast_mtcnn (min 20, batch 2)" in rows
    assert any(name.startswith("fast_mtcnn+centerface") for name in rows)
    if importlib.util.find_spec("deface") is not None:
        assert any(name.startswith("deface") for name in rows)
    for cells in rows.values():
        speed, with_decode = float(cells[-2]), float(cells[-1])
        assert 0 < with_decode <= speed
    stock = next(cells for name, cells in rows.items() if name.startswith("stock_mtcnn"))
    fast = rows["fast_mtcnn (min 20, batch 1)"]
    assert stock[-8:-2] == fast[-8:-2]  # same recall per band, precision and false positives as stock
    assert "device cpu" in out
