"""Fixtures: the demo-style dataset is built once per session from scikit-image's photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def demo_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.demo_data import build_demo_dataset

    folder = tmp_path_factory.mktemp("demo") / "images"
    build_demo_dataset(folder)
    return folder
