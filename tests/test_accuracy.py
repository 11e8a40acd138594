"""Accuracy impact: quality metrics, label reading, sampling, statistics, and the reference model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transforms.accuracy import (
    DEFAULT_WEIGHTS_SHA256,
    ReferenceClassifierHandler,
    ReferenceSampling,
    ReferenceSpec,
    accuracy_impact,
    bootstrap_mean_interval,
    pack_views,
    read_label,
    reference_view,
    sample_cutoff,
    sample_key,
    wilson_interval,
)
from transforms.decode import load_normalized
from transforms.metrics import PSNR_CAP_DB, image_quality, outside_mask, psnr, ssim
from transforms.records import Record


def _record(record_id: str = "r", extras: tuple = (), views: bytes = b"") -> Record:
    return Record("s", 0, record_id, "uri", "rel", "", b"x", extras=extras, reference_views=views)


# --- PSNR / SSIM against hand-computed values ---------------------------------------------------

def test_psnr_by_hand() -> None:
    a = np.zeros((2, 2))
    b = a.copy()
    b[0, 0] = 10  # MSE = 100 / 4 = 25 -> 10 log10(255^2 / 25) = 10 log10(2601)
    assert psnr(a, b) == pytest.approx(34.1514, abs=1e-4)
    assert psnr(a, a) == PSNR_CAP_DB
    unchanged = np.ones((2, 2), dtype=bool)
    unchanged[0, 0] = False
    assert psnr(a, b, unchanged) == PSNR_CAP_DB
    assert math.isnan(psnr(a, b, np.zeros((2, 2), dtype=bool)))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, np.zeros((3, 2)))


def test_ssim_by_hand_and_against_scikit_image() -> None:
    x, y = np.full((9, 9), 100.0), np.full((9, 9), 110.0)
    c1 = (0.01 * 255) ** 2  # flat windows: variances and covariance are 0, the structure term is 1
    assert ssim(x, y) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), rel=1e-12)
    assert ssim(x, x) == pytest.approx(1.0)
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (30, 41)).astype(float)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255)
    assert ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=255), rel=1e-9)


def test_image_quality_outside_faces_ignores_the_replaced_region() -> None:
    original = Image.new("RGB", (40, 30), (120, 60, 30))
    changed = original.copy()
    changed.paste((0, 0, 0), (10, 5, 20, 15))
    quality = image_quality(original, changed, [(10, 5, 20, 15)])
    assert quality.psnr < 30 and quality.ssim < 1.0
    assert quality.psnr_outside_faces == PSNR_CAP_DB
    assert quality.ssim_outside_faces == pytest.approx(1.0)
    covered = image_quality(original, changed, [(0, 0, 40, 30)])
    assert math.isnan(covered.psnr_outside_faces) and math.isnan(covered.ssim_outside_faces)



def test_image_quality_of_an_unchanged_image_is_what_the_full_computation_gives() -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    same = image_quality(image, image.copy(), [])
    luma = np.asarray(image.convert("L"), dtype=float)
    pixels = np.asarray(image, dtype=float)
    assert same.psnr == psnr(pixels, pixels) == PSNR_CAP_DB
    assert same.ssim == same.ssim_outside_faces == 1.0 == pytest.approx(ssim(luma, luma))
    assert same.psnr_outside_faces == PSNR_CAP_DB
    covered = image_quality(image, image.copy(), [(0, 0, 40, 30)])
    assert math.isnan(covered.psnr_outside_faces) and math.isnan(covered.ssim_outside_faces)
    boxed = image_quality(image, image.copy(), [(5, 5, 20, 20)])
    outside = outside_mask(image.size, [(5, 5, 20, 20)])
    assert boxed.psnr_outside_faces == psnr(pixels, pixels, outside) == PSNR_CAP_DB
    assert boxed.ssim_outside_faces == 1.0 == pytest.approx(ssim(luma, luma, outside))
    narrow = image_quality(image, image.copy(), [(0, 0, 40, 27)])  # pixels left outside, no whole window
    assert narrow.psnr_outside_faces == PSNR_CAP_DB and math.isnan(narrow.ssim_outside_faces)
    assert math.isnan(ssim(luma, luma, outside_mask(image.size, [(0, 0, 40, 27)])))
    tiny = Image.new("RGB", (5, 5), (9, 9, 9))  # smaller than SSIM's window: undefined, as computed
    assert math.isnan(image_quality(tiny, tiny.copy(), []).ssim)
    changed = np.asarray(image).copy()
    changed[0, 0, 0] ^= 1
    assert image_quality(image, Image.fromarray(changed), []).psnr < PSNR_CAP_DB

# --- Labels from WebDataset sidecars and Parquet columns ----------------------------------------

def test_read_label_from_tar_sidecars() -> None:
    record = _record(extras=(("cls", b"3\n"), ("json", b'{"label": 7, "meta": {"class_id": 9}}')))
    assert read_label(record.extras, "cls") == 3
    assert read_label(record.extras, "json:label") == 7
    assert read_label(record.extras, "json:meta.class_id") == 9
    assert read_label(record.extras, "json:missing") is None
    assert read_label(record.extras, "txt") is None
    assert read_label(record.extras, "") is None
    assert read_label((("cls", b"cat"),), "cls") is None
    assert read_label((("json", b"not json"),), "json:label") is None


def test_read_label_from_parquet_columns() -> None:
    record = _record(extras=(("label", 5), ("np_label", np.int64(11)), ("float_label", 4.0),
                             ("flag", True), ("meta", '{"y": 2}'), ("none", None)))
    assert read_label(record.extras, "label") == 5
    assert read_label(record.extras, "np_label") == 11
    assert read_label(record.extras, "float_label") == 4
    assert read_label(record.extras, "flag") is None
    assert read_label(record.extras, "meta:y") == 2
    assert read_label(record.extras, "none") is None


# --- Sampling ------------------------------------------------------------------------------------

def test_sampling_is_deterministic_and_exact() -> None:
    ids = [f"rec-{i}" for i in range(50)]
    keys = sorted(sample_key(i, 7) for i in ids)
    assert sample_key("rec-1", 7) == sample_key("rec-1", 7) != sample_key("rec-1", 8)
    sampling = ReferenceSampling(sample_size=10, seed=7)
    cutoff = sample_cutoff(keys[:10])
    chosen = [i for i in ids if sampling.selected(i, cutoff)]
    assert len(chosen) == 10
    assert chosen == [i for i in reversed(ids) if sampling.selected(i, cutoff)][::-1]
    assert not any(sampling.selected(i, sample_cutoff([])) for i in ids)
    assert all(sampling.selected(i, None) for i in ids)
    with pytest.raises(ValueError, match="reference_sample_size"):
        ReferenceSampling(sample_size=-1)


# --- Statistics ----------------------------------------------------------------------------------

def test_wilson_interval_by_hand() -> None:
    # 8 of 10 at z = 1.96: centre (0.8 + 0.19208) / 1.38416, half 1.96 sqrt(0.025604) / 1.38416
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_bootstrap_interval() -> None:
    assert bootstrap_mean_interval([0.0] * 20) == (0.0, 0.0)
    assert bootstrap_mean_interval([-100.0] * 5) == (-100.0, -100.0)
    values = [0.0] * 15 + [-100.0] * 5
    low, high = bootstrap_mean_interval(values)
    assert low < -25.0 < high and -100 <= low and high <= 0
    assert bootstrap_mean_interval(values) == (low, high)  # fixed seed: reproducible
    assert all(math.isnan(v) for v in bootstrap_mean_interval([]))


def test_accuracy_impact_by_hand() -> None:
    def row(label: int, orig: list[int], anon: list[int]) -> dict:
        return {"status": "published", "reference_label": label,
                "reference_top5_original": orig, "reference_top5_anonymized": anon}

    rows = [
        row(1, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),  # agree, both right
        row(1, [1, 2, 3, 4, 5], [2, 1, 3, 4, 5]),  # disagree at top-1, original top-1 in anon top-5
        row(2, [2, 9, 8, 7, 6], [3, 4, 5, 6, 7]),  # disagree at top-1 and top-5, label lost
        row(3, [4, 3, 8, 7, 6], [4, 3, 8, 7, 6]),  # agree, both wrong at top-1, right at top-5
        {"status": "quarantined", "reference_label": 1, "reference_top5_original": [0] * 5,
         "reference_top5_anonymized": [1] * 5},   # quarantined: not counted
    ]
    result = accuracy_impact(rows, min_top1_agreement=0.6, model={"model": "m"}, sample_size=4,
                             sample_seed=3)
    assert result["images_classified"] == 4 and result["images_labelled"] == 4
    assert result["top1_agreement"]["value"] == 0.5
    assert result["top5_agreement"]["value"] == 0.75
    assert result["top1_agreement"]["ci95"] == pytest.approx(list(wilson_interval(2, 4)))
    assert result["top1_accuracy_original"]["value"] == 0.75
    assert result["top1_accuracy_anonymized"]["value"] == 0.25
    assert result["top1_accuracy_delta_points"]["value"] == pytest.approx(-50.0)
    assert result["top5_accuracy_original"]["value"] == 1.0
    assert result["top5_accuracy_anonymized"]["value"] == 0.75
    assert result["top5_accuracy_delta_points"]["value"] == pytest.approx(-25.0)
    low, high = result["top1_accuracy_delta_points"]["ci95"]
    assert low <= -50.0 <= high
    per_class = {e["class"]: e for e in result["per_class"]}
    assert per_class[1]["count"] == 2 and per_class[1]["top1_delta_points"] == pytest.approx(-50.0)
    assert per_class[2]["top1_delta_points"] == pytest.approx(-100.0)
    assert per_class[3]["top1_delta_points"] == 0.0
    assert result["per_class"][0]["class"] == 2  # worst first
    assert result["passed"] is False and result["sample_size"] == 4 and result["sample_seed"] == 3
    unlabelled = accuracy_impact([{**r, "reference_label": None} for r in rows[:4]], 0.5)
    assert unlabelled["per_class_by"] == "original_top1" and "top1_accuracy_original" not in unlabelled
    assert unlabelled["passed"] is True


# --- The reference model -------------------------------------------------------------------------

def test_reference_spec_validation() -> None:
    with pytest.raises(ValueError, match="reference_model"):
        ReferenceSpec("not_a_net")
    with pytest.raises(ValueError, match="reference_weights"):
        ReferenceSpec("torchscript")
    with pytest.raises(ValueError, match="reference_weights"):
        ReferenceSpec("resnet18")
    with pytest.raises(ValueError, match="reference_device"):
        ReferenceSpec("mobilenet_v2", device="tpu")
    with pytest.raises(FileNotFoundError):
        ReferenceSpec("resnet18", weights="/nonexistent/weights.pth").weights_bytes()


def test_bundled_checkpoint_is_torchvisions() -> None:
    info = ReferenceSpec("mobilenet_v2").info()
    assert info["weights_sha256"] == DEFAULT_WEIGHTS_SHA256
    assert info["weights_sha256"].startswith("b0353104")  # torchvision's file-name hash prefix


def test_reference_view_is_the_imagenet_centre_crop() -> None:
    view = reference_view(Image.new("RGB", (512, 300), (10, 20, 30)))
    assert view.shape == (224, 224, 3) and view.dtype == np.uint8
    assert tuple(view[100, 100]) == (10, 20, 30)


@pytest.fixture(scope="module")
def reference_handler() -> tuple[ReferenceClassifierHandler, object]:
    handler = ReferenceClassifierHandler(ReferenceSpec("mobilenet_v2", torch_threads=2), batch_size=8,
                                         label_field="cls")
    return handler, handler.load_model()


def test_identical_images_agree_fully(demo_images: Path, reference_handler: tuple) -> None:
    handler, model = reference_handler
    batch = []
    for i, path in enumerate(sorted(p for p in demo_images.rglob("*") if p.is_file())):
        image, _ = load_normalized(path.read_bytes(), 10**8)
        batch.append(_record(f"r{i}", views=pack_views(image, image)))
    out = list(handler.run_inference(batch, model))
    assert all(not r.reference_views for r in out)
    assert all(len(r.reference_top5_original) == 5 for r in out)
    # Label every image with its own prediction: identical images must give delta 0.
    rows = [{"status": "published", "reference_label": r.reference_top5_original[0],
             "reference_top5_original": list(r.reference_top5_original),
             "reference_top5_anonymized": list(r.reference_top5_anonymized)} for r in out]
    result = accuracy_impact(rows, min_top1_agreement=0.99)
    assert result["top1_agreement"]["value"] == 1.0 and result["top5_agreement"]["value"] == 1.0
    assert result["top1_accuracy_delta_points"]["value"] == 0.0
    assert result["top5_accuracy_delta_points"]["value"] == 0.0
    assert result["passed"] is True
    # A grey image is not the coffee cup: the model does discriminate.
    coffee, _ = load_normalized((demo_images / "scenes" / "coffee.jpg").read_bytes(), 10**8)
    grey = Image.new("RGB", coffee.size, (128, 128, 128))
    [flipped] = handler.run_inference([_record("g", extras=(("cls", b"967"),),
                                               views=pack_views(coffee, grey))], model)
    assert flipped.reference_top5_original[0] != flipped.reference_top5_anonymized[0]
    assert flipped.reference_label == 967
