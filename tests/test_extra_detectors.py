"""The Haar profile detector, the union of detectors, and their wiring from the options."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps
from skimage import data

from pipelines.anonymize import detector_stack_for
from pipelines.config import build_options
from tests.fakes import FixedBoxesFactory
from transforms.detection import (
    HAAR_PROFILE,
    Factory,
    FastMtcnnDetector,
    FastMtcnnSettings,
    HaarProfileDetector,
    HaarSettings,
    UnionDetector,
    UnionFactory,
    merge_faces,
)
from transforms.records import Face

BASE_CONF = str(Path(__file__).resolve().parents[1] / "conf" / "base.yaml")


def _options(*settings: str) -> object:
    options, _ = build_options([BASE_CONF], ["input=/tmp/in", "output=/tmp/out", "purpose=test",
                                              "legal_basis=legitimate_interests", *settings], [])
    return options


def test_haar_profile_boxes_mirror_with_the_image() -> None:
    """The cameraman's turned face is found, and on the mirrored photo at the mirrored place."""
    camera = Image.fromarray(data.camera()).convert("RGB")
    detector = HaarProfileDetector(HaarSettings())
    found, mirrored = detector.detect([camera, ImageOps.mirror(camera)])
    assert len(found) == 1 and len(mirrored) == 1
    face, other = found[0], mirrored[0]
    assert face.detector == HAAR_PROFILE and face.score == 0.8
    assert 150 < face.x1 < face.x2 < 300 and 80 < face.y1 < face.y2 < 220  # the face, not the tripod
    assert (other.x1, other.x2) == (camera.width - face.x2, camera.width - face.x1)
    assert detector.detect([Image.new("RGB", (10, 10))]) == [[]]


def test_haar_settings_validate() -> None:
    with pytest.raises(ValueError, match="min_neighbors"):
        HaarSettings(min_neighbors=0)
    with pytest.raises(ValueError, match="scale_factor"):
        HaarSettings(scale_factor=1.0)


def test_merge_keeps_best_box_and_names_every_finder() -> None:
    faces = [Face(10, 10, 50, 50, 0.99, "fast_mtcnn"), Face(12, 8, 52, 50, 0.8, "haar_profile"),
             Face(100, 100, 140, 140, 0.8, "haar_profile")]
    merged = merge_faces(faces, 0.3)
    assert len(merged) == 2
    assert merged[0].detector == "fast_mtcnn+haar_profile" and merged[0].x1 == 10
    assert merged[1].detector == "haar_profile"


def test_union_adds_faces_the_main_detector_misses() -> None:
    """A face only the second detector sees (a fake here) reaches the output, with its finder."""
    astronaut = Image.fromarray(data.astronaut())
    fast = FastMtcnnDetector(FastMtcnnSettings(device="cpu"))
    missed = FixedBoxesFactory([(400, 400, 440, 440, 0.8)])()
    union = UnionDetector([fast, missed])
    faces = union.detect([astronaut])[0]
    names = sorted(f.detector for f in faces)
    assert names == ["fast_mtcnn", "fixed"]
    assert union.name == "fast_mtcnn+fixed"
    assert union.info()["name"] == "fast_mtcnn+fixed"


def test_options_choose_the_detectors() -> None:
    default = detector_stack_for(_options()).detect  # type: ignore[arg-type]
    assert isinstance(default, UnionFactory) and default.info()["name"] == "fast_mtcnn+centerface+retinaface"
    factory = detector_stack_for(_options("detector=fast_mtcnn", "detector_extra=''")).detect  # type: ignore[arg-type]
    assert isinstance(factory, Factory) and factory.detector is FastMtcnnDetector
    assert factory.info()["name"] == "fast_mtcnn"
    assert factory.settings.scale_factor == pytest.approx(0.709)
    union = detector_stack_for(_options("detector=fast_mtcnn", "detector_extra=haar_profile",
                                        "detector_scale_factor=0.8")).detect  # type: ignore[arg-type]
    assert isinstance(union, UnionFactory)
    assert union.info()["name"] == "fast_mtcnn+haar_profile"
    assert union.factories[0].settings.scale_factor == pytest.approx(0.8)
    assert union().name == "fast_mtcnn+haar_profile"


def test_factories_pickle_by_value_and_describe_without_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one generic factory (and the union of factories) survives pickling to a worker equal to
    itself, and describes its detector without loading a model."""
    import pickle

    haar = Factory(HaarProfileDetector, HaarSettings(min_neighbors=3))
    union = UnionFactory([Factory(FastMtcnnDetector, FastMtcnnSettings(scale_factor=0.8)), haar], 0.4)
    assert pickle.loads(pickle.dumps(union)) == union and pickle.loads(pickle.dumps(haar)) == haar
    assert union != UnionFactory([Factory(FastMtcnnDetector, FastMtcnnSettings()), haar], 0.4)

    def refuse(*args: object) -> None:
        raise AssertionError("info() built the detector")

    monkeypatch.setattr(HaarProfileDetector, "__init__", refuse)
    monkeypatch.setattr(FastMtcnnDetector, "__init__", refuse)
    assert haar.info()["name"] == HAAR_PROFILE and haar.info()["weights_sha256"]
    assert union.info()["name"] == "fast_mtcnn+haar_profile"
    with pytest.raises(AssertionError, match="built the detector"):
        haar()
    with pytest.raises(ValueError, match="factories"):
        UnionFactory([])


def test_detector_stack_lets_only_a_subset_verify_detector_reuse_detections() -> None:
    """The options' stack verifies with the detect detector less its detection-only extras (a subset,
    so same-pixel detections may be reused) and records both with their settings; a caller's own
    verify detector is not known to be a subset."""
    import pickle

    from pipelines.anonymize import run
    from transforms.detection import DetectorStack

    configured = detector_stack_for(_options("detector=fast_mtcnn", "detector_extra=haar_profile"))  # type: ignore[arg-type]
    assert configured.verify_is_detect_subset and pickle.loads(pickle.dumps(configured)) == configured
    recorded = configured.info()
    assert recorded["detect"]["name"] == recorded["verify"]["name"] == "fast_mtcnn+haar_profile"
    assert recorded["verify"]["settings"]["haar_profile"]["min_neighbors"] == 5
    assert recorded["verify"]["settings"]["fast_mtcnn"]["scale_factor"] == pytest.approx(0.709)
    fake, other = FixedBoxesFactory(), FixedBoxesFactory([(0, 0, 10, 10, 0.9)])
    alone = DetectorStack.of(fake)
    assert alone.verify is fake and alone.verify_is_detect_subset
    assert alone.info() == {"detect": fake.info(), "verify": fake.info()}  # a fake has no settings to record
    assert not DetectorStack.of(fake, other).verify_is_detect_subset
    with pytest.raises(ValueError, match="not both"):
        run(options=_options(), detectors=configured, detector_factory=fake)  # type: ignore[arg-type]


def test_unknown_extra_detector_is_a_config_error() -> None:
    from pipelines.options import validate

    with pytest.raises(ValueError, match="detector_extra"):
        validate(_options("detector_extra=haar_profile,dsfd"))  # type: ignore[arg-type]


@pytest.mark.slow
def test_job_with_the_default_detectors_publishes_and_records_finders(demo_images: Path, tmp_path: Path) -> None:
    """The whole job (detect + verify) with the default fast_mtcnn+centerface+retinaface: every
    record published, faces found, each face names the detectors that found it, the manifest names them."""
    from tests.helpers import run_job

    table = run_job(str(demo_images), str(tmp_path / "out"), shard_size=4)
    rows = table.to_pylist()
    assert rows and all(row["status"] == "published" for row in rows), [r["reason"] for r in rows]
    faces = [face for row in rows for face in row["faces"]]
    assert len(faces) >= 9
    finders = [set(face["detector"].split("+")) for face in faces]
    assert all(names <= {"fast_mtcnn", "centerface", "retinaface"} for names in finders), finders
    assert sum(1 for names in finders if names == {"fast_mtcnn", "centerface", "retinaface"}) >= 7, finders
    assert rows[0]["detector"]["name"] == "fast_mtcnn+centerface+retinaface"
