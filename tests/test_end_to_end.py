"""The whole job on the DirectRunner over demo-style data, checked by independent readers."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY_SETS, exiftool_tags, jpeg_bytes, run_job
from transforms.detection import MtcnnDetector, MtcnnSettings

pytestmark = pytest.mark.slow

# Tags exiftool reports for any file (file-system facts and the decoder's own view of pixels).
NEUTRAL_GROUPS = ("SourceFile", "ExifTool:", "File:", "Composite:", "JFIF:", "PNG:", "RIFF:")


@pytest.fixture(scope="module")
def demo_run(demo_images: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    output = tmp_path_factory.mktemp("demo-run") / "out"
    table = run_job(str(demo_images), str(output), shard_size=3)
    return output, table.to_pylist()


def test_every_input_is_in_the_manifest_once(demo_images: Path, demo_run: tuple[Path, list[dict]]) -> None:
    _, rows = demo_run
    inputs = sorted(str(p.relative_to(demo_images)) for p in demo_images.rglob("*") if p.is_file())
    assert sorted(row["relative_path"] for row in rows) == inputs
    assert len({row["record_id"] for row in rows}) == len(inputs)
    assert all(row["status"] == "published" for row in rows), [r["reason"] for r in rows]


def test_every_face_region_changed(demo_images: Path, demo_run: tuple[Path, list[dict]]) -> None:
    output, rows = demo_run
    with_faces = [row for row in rows if row["faces"]]
    assert sum(len(row["faces"]) for row in with_faces) >= 9
    for row in with_faces:
        from transforms.decode import load_normalized

        original, _ = load_normalized((demo_images / row["relative_path"]).read_bytes(), 10**8)
        result = Image.open(output / "data" / row["relative_path"]).convert("RGB")
        a = np.asarray(original.convert("RGB"), dtype=np.int16)
        b = np.asarray(result, dtype=np.int16)
        for face in row["faces"]:
            x1, y1, x2, y2 = (int(face[k]) for k in ("x1", "y1", "x2", "y2"))
            region_a, region_b = a[y1:y2, x1:x2], b[y1:y2, x1:x2]
            # Blurred beyond recognition: detail (local gradient energy) mostly gone.
            detail_a = np.abs(np.diff(region_a, axis=1)).mean()
            detail_b = np.abs(np.diff(region_b, axis=1)).mean()
            assert detail_b < 0.35 * detail_a, (row["relative_path"], detail_a, detail_b)



def test_faceless_jpeg_is_published_losslessly(demo_images: Path, demo_run: tuple[Path, list[dict]]) -> None:
    from transforms.decode import load_normalized

    output, rows = demo_run
    by_path = {row["relative_path"]: row for row in rows}
    coffee = by_path["scenes/coffee.jpg"]
    assert (coffee["output_encoding"], coffee["verify_detection"]) == ("stripped", "reused")
    assert coffee["psnr"] == 100.0 and coffee["ssim"] == 1.0
    original, _ = load_normalized((demo_images / "scenes" / "coffee.jpg").read_bytes(), 10**8)
    assert np.array_equal(np.asarray(Image.open(output / "data" / "scenes" / "coffee.jpg")), np.asarray(original))
    # A JPEG with a face keeps its other blocks and is searched in windows around them; rotated
    # (EXIF) and WebP outputs are re-encoded whole and searched whole.
    expected = {"people/astronaut.jpg": ("spliced", "regions"), "people/astronaut-rotated.jpg": ("reencoded", "ran"),
                "scenes/chelsea.webp": ("reencoded", "ran")}
    for path, how in expected.items():
        assert (by_path[path]["output_encoding"], by_path[path]["verify_detection"]) == how, path

def test_no_face_is_redetected_on_outputs(demo_run: tuple[Path, list[dict]]) -> None:
    output, rows = demo_run
    detector = MtcnnDetector(MtcnnSettings(min_face_size=12, torch_threads=1))
    for row in rows:
        image = Image.open(output / "data" / row["relative_path"]).convert("RGB")
        faces = [f for f in detector.detect([image])[0] if f.score >= 0.9]
        assert not faces, (row["relative_path"], faces)


def test_rotated_image_comes_out_upright(demo_images: Path, demo_run: tuple[Path, list[dict]]) -> None:
    output, rows = demo_run
    by_path = {row["relative_path"]: row for row in rows}
    upright = by_path["people/astronaut.jpg"]
    rotated = by_path["people/astronaut-rotated.jpg"]
    assert (rotated["width"], rotated["height"]) == (upright["width"], upright["height"])
    box_a, box_b = upright["faces"][0], rotated["faces"][0]
    assert abs(box_a["x1"] - box_b["x1"]) < 8 and abs(box_a["y1"] - box_b["y1"]) < 8


def test_exiftool_reads_no_metadata_in_outputs(demo_images: Path, demo_run: tuple[Path, list[dict]]) -> None:
    output, rows = demo_run
    # The check can fail: the inputs do carry GPS, serials, XMP, IPTC and a thumbnail.
    source = exiftool_tags(demo_images / "people" / "astronaut.jpg")
    assert any(k.startswith("EXIF:GPS") for k in source) and "EXIF:ThumbnailImage" in source
    assert any(k.startswith("XMP") for k in source) and any(k.startswith("IPTC") for k in source)
    for row in rows:
        tags = exiftool_tags(output / "data" / row["relative_path"])
        leftover = {k: v for k, v in tags.items() if not k.startswith(NEUTRAL_GROUPS)}
        assert not leftover, (row["relative_path"], leftover)
        assert "File:Comment" not in tags


def test_manifest_names_removed_metadata(demo_run: tuple[Path, list[dict]]) -> None:
    _, rows = demo_run
    row = next(r for r in rows if r["relative_path"] == "people/astronaut.jpg")
    removed = set(row["metadata_removed"])
    assert {"EXIF", "XMP", "IPTC", "Comment", "EXIF:ThumbnailImage"} <= removed
    assert any(name.startswith("GPS:") for name in removed)
    assert "Jane" not in " ".join(removed)  # names only, never values
    png = next(r for r in rows if r["relative_path"] == "people/cameraman.png")
    assert "PNG:text:Author" in png["metadata_removed"]


def test_cli_run_writes_a_passing_summary(demo_images: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pipelines.cli import main

    folder = tmp_path / "in"
    (folder / "people").mkdir(parents=True)
    shutil.copy(demo_images / "people" / "two-people.jpg", folder / "people")
    shutil.copy(demo_images / "scenes" / "coffee.jpg", folder)
    output = tmp_path / "out"
    assert main(["run", "--conf", "conf/base.yaml", "--set", f"input={folder}",
                 "--set", f"output={output}", *ACCOUNTABILITY_SETS, "--runner=DirectRunner"]) == 0
    summary = json.loads((output / "report" / "summary.json").read_text())
    assert summary["passed"] is True
    assert (summary["inputs"], summary["published"], summary["quarantined"]) == (2, 2, 0)
    assert summary["faces_total"] == 2
    assert summary["published_outputs"] == {"spliced, detection regions": 1, "stripped, detection reused": 1}
    assert "published outputs: 1 spliced, detection regions; 1 stripped, detection reused" in capsys.readouterr().out
    html_report = (output / "report" / "summary.html").read_text()
    assert html_report.count("PASSED") == 1 and "stripped, detection reused" in html_report


def test_cli_run_verifies_with_the_verify_detector(demo_images: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``anonymize run`` itself: the outputs are re-checked by the verify detector (CenterFace
    without its low-light pass), not the detect one, and the record of processing and the run
    summary say so; verification still reuses the detections on a stripped face-less JPEG and runs
    on the output with faces."""
    import json

    from pipelines.cli import main
    from transforms.detection.centerface import CenterFaceDetector, CenterFaceSettings
    from transforms.manifest import read_manifests

    built: list[float] = []  # low_light_scale of every CenterFace the job builds (in-process runner)
    build = CenterFaceDetector.__init__

    def spy(self: CenterFaceDetector, settings: CenterFaceSettings) -> None:
        built.append(settings.low_light_scale)
        build(self, settings)

    monkeypatch.setattr(CenterFaceDetector, "__init__", spy)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(demo_images / "people" / "two-people.jpg", folder)
    shutil.copy(demo_images / "scenes" / "coffee.jpg", folder)
    output = tmp_path / "out"
    assert main(["run", "--conf", "conf/base.yaml", "--set", f"input={folder}", "--set", f"output={output}",
                 "--set", "identity_check=false", *ACCOUNTABILITY_SETS, "--runner=DirectRunner"]) == 0
    assert set(built) == {0.25, 0.0}, built  # both stages' detectors, and only those
    entries = [json.loads(p.read_text()) for p in sorted((output / "audit").glob("*.json"))]
    assert [entry["kind"] for entry in entries] == ["run_started", "run"]
    summary = json.loads((output / "report" / "summary.json").read_text())
    for detectors in [entry["detectors"] for entry in entries] + [summary["detectors"]]:
        detect, verify = detectors["detect"], detectors["verify"]
        # RetinaFace and the low-light pass detect only: built to find blurred faces, they would
        # re-find the blurred ones (pipelines.anonymize.detector_stack_for).
        assert (detect["name"], verify["name"]) == ("fast_mtcnn+centerface+retinaface", "fast_mtcnn+centerface")
        assert detect["settings"]["centerface"]["low_light_scale"] == 0.25
        assert verify["settings"]["centerface"]["low_light_scale"] == 0.0
        assert detect["settings"]["fast_mtcnn"] == verify["settings"]["fast_mtcnn"]
    by_name = {row["relative_path"]: row for row in read_manifests(str(output)).to_pylist()}
    assert (by_name["coffee.jpg"]["output_encoding"], by_name["coffee.jpg"]["verify_detection"]) == (
        "stripped", "reused")
    assert by_name["two-people.jpg"]["faces"] and by_name["two-people.jpg"]["verify_detection"] == "regions"
    assert all(row["status"] == "published" for row in by_name.values())


def _bad_inputs(folder: Path) -> None:
    good = Image.fromarray(np.full((64, 96, 3), 120, np.uint8))
    data = jpeg_bytes(good)
    (folder / "good.jpg").write_bytes(data)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(bytes(range(256)) * 4)
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_bytes(b"plain text pretending to be a png")
    # A decompression bomb: tiny file, huge declared size.
    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, "PNG")
    (folder / "bomb.png").write_bytes(bomb.getvalue())
    explode = Image.fromarray(np.full((50, 77, 3), 90, np.uint8))
    (folder / "explodes-detector.jpg").write_bytes(jpeg_bytes(explode))


def test_bad_inputs_are_quarantined_and_the_rest_published(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _bad_inputs(folder)
    output = tmp_path / "out"
    rows = run_job(str(folder), str(output), FixedBoxesFactory(raise_on_width=77),
                   max_image_pixels=20_000_000).to_pylist()
    by_name = {row["relative_path"]: row for row in rows}
    assert len(rows) == 7
    assert by_name["good.jpg"]["status"] == "published"
    expected = {
        "zero.jpg": "decode:empty_file",
        "corrupt.jpg": "decode:undecodable",
        "truncated.jpg": "decode:truncated",
        "notes.png": "decode:undecodable",
        "bomb.png": "decode:too_many_pixels",
        "explodes-detector.jpg": "detect:detector_error:RuntimeError",
    }
    for name, reason in expected.items():
        assert by_name[name]["status"] == "quarantined", name
        assert by_name[name]["reason"] == reason, (name, by_name[name]["reason"])
        assert by_name[name]["output_uri"] is None
    published = sorted(p.name for p in (output / "data").rglob("*") if p.is_file())
    assert published == ["good.jpg"]


def test_a_face_left_on_the_output_quarantines_the_record(tmp_path: Path, demo_images: Path) -> None:
    """A face the detect pass missed and verification finds on the output is replaced in a second
    pass and the output verified again; a face still found after that quarantines the record."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(demo_images / "people" / "astronaut.jpg", folder / "astronaut.jpg")
    shutil.copy(demo_images / "scenes" / "coffee.jpg", folder / "coffee.jpg")
    # Detection misses on purpose; verification uses the real MTCNN and finds the face.
    from transforms.detection import Factory

    output = tmp_path / "out"
    rows = run_job(str(folder), str(output), FixedBoxesFactory(boxes=()),
                   verify_factory=Factory(MtcnnDetector, MtcnnSettings(torch_threads=1))).to_pylist()
    by_name = {row["relative_path"]: row for row in rows}
    astronaut = by_name["astronaut.jpg"]
    assert astronaut["status"] == "published", astronaut["reason"]
    assert astronaut["replace_passes"] == 2 and astronaut["face_count"] == 1 and astronaut["residual_faces"] == 0
    assert by_name["coffee.jpg"]["status"] == "published" and by_name["coffee.jpg"]["replace_passes"] == 1
    # A verification detector that finds the face wherever it was: still there after the second pass.
    face = astronaut["faces"][0]
    output = tmp_path / "out2"
    rows = run_job(str(folder), str(output), FixedBoxesFactory(boxes=()), verify_factory=FixedBoxesFactory(
        [(face["x1"], face["y1"], face["x2"], face["y2"], 0.99)])).to_pylist()
    by_name = {row["relative_path"]: row for row in rows}
    assert by_name["astronaut.jpg"]["status"] == "quarantined"
    assert by_name["astronaut.jpg"]["reason"] == "verify:residual_faces"
    assert not (output / "data" / "astronaut.jpg").exists()
