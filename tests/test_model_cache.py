"""The per-machine cache of derived model files: made once, reused whole, made again when damaged."""

from __future__ import annotations

from pathlib import Path

import pytest

from transforms.model_cache import cache_dir, derived_model


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DATASET_ANONYMIZER_CACHE", str(folder))
    return folder


def test_made_once_then_read_from_the_cache(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"shipped model")
    calls: list[int] = []

    def make() -> bytes:
        calls.append(1)
        return b"rewritten model"

    assert derived_model("m", source, "v1", make) == b"rewritten model"
    assert derived_model("m", source, "v1", make) == b"rewritten model"
    assert len(calls) == 1
    assert cache_dir() == cache and len(list(cache.glob("m-*-v1.onnx"))) == 1


def test_a_new_source_or_version_is_a_new_entry(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"shipped model")
    assert derived_model("m", source, "v1", lambda: b"one") == b"one"
    assert derived_model("m", source, "v2", lambda: b"two") == b"two"
    source.write_bytes(b"another shipped model")
    assert derived_model("m", source, "v1", lambda: b"three") == b"three"
    assert len(list(cache.glob("m-*.onnx"))) == 3


def test_a_damaged_entry_is_made_again(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"shipped model")
    derived_model("m", source, "v1", lambda: b"rewritten model")
    (entry,) = cache.glob("m-*-v1.onnx")
    entry.write_bytes(b"rewritten mo")  # cut short
    assert derived_model("m", source, "v1", lambda: b"rewritten model") == b"rewritten model"
    assert entry.read_bytes() == b"rewritten model"


def test_an_unwritable_cache_still_gives_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DATASET_ANONYMIZER_CACHE", str(blocker / "cache"))
    source = tmp_path / "model.onnx"
    source.write_bytes(b"shipped model")
    assert derived_model("m", source, "v1", lambda: b"rewritten model") == b"rewritten model"


def test_centerface_runs_from_its_cached_rewrite(cache: Path) -> None:
    """The detector's second load reads the rewrite from the cache, and finds the same faces."""
    import io

    from PIL import Image

    from sampledata.labelled_faces import generate_labelled_set
    from transforms.detection import CenterFaceDetector, CenterFaceSettings

    image = Image.open(io.BytesIO(next(iter(generate_labelled_set(with_faces=1, faceless=0)))[1]))
    first = CenterFaceDetector(CenterFaceSettings(device="cpu")).detect([image])
    (entry,) = cache.glob("centerface-dynamic-*.onnx")
    stamp = entry.stat().st_mtime_ns
    second = CenterFaceDetector(CenterFaceSettings(device="cpu")).detect([image])
    assert entry.stat().st_mtime_ns == stamp
    assert first == second and first[0]
