"""Fixtures: the demo-style dataset is built once per session from scikit-image's photos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def demo_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sampledata.demo import build_demo_dataset

    folder = tmp_path_factory.mktemp("demo") / "images"
    build_demo_dataset(folder)
    return folder


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A real S3 API server on 127.0.0.1 (tests/s3server.py); its user's credentials are put in
    the environment, as a user would have them, and restored afterwards. Yields the endpoint."""
    from tests.s3server import s3_server

    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in names}
    try:
        with s3_server() as (endpoint, credentials):
            os.environ.update(credentials)
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
