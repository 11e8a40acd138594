"""Accuracy impact through the whole job: a destructive policy fails the run check; labels come
from WebDataset sidecars and Parquet columns; the reference sample has the configured size."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.options import SPECS_BY_NAME
from tests.datasets import write_parquet_files, write_tar_shards
from tests.fakes import FixedBoxesFactory
from tests.helpers import run_job
from transforms.accuracy import ReferenceSpec
from transforms.summary import summarise

pytestmark = pytest.mark.slow

# The identity check (issue 5) judges faces, not utility; a whole-image "face" is not one.
REFERENCE = {"reference_model": "mobilenet_v2", "torch_threads": 2,
             **({"identity_check": False} if "identity_check" in SPECS_BY_NAME else {})}


def _reference(sample_size: int = 0, seed: int = 0, bound: float = 0.5) -> dict:
    return {"model": ReferenceSpec("mobilenet_v2").info(), "sample_size": sample_size,
            "sample_seed": seed, "min_top1_agreement": bound}


def test_destructive_policy_fails_the_agreement_check(demo_images: Path, tmp_path: Path) -> None:
    whole_image = FixedBoxesFactory([(0.0, 0.0, 100_000.0, 100_000.0, 0.99)])
    table = run_job(str(demo_images), str(tmp_path / "out"), detector_factory=whole_image,
                    verify_factory=FixedBoxesFactory(), method="solid", shard_size=4,
                    reference_sample_size=5, reference_sample_seed=3, **REFERENCE)
    rows = table.to_pylist()
    published = [r for r in rows if r["status"] == "published"]
    assert len(published) == 7, [r["reason"] for r in rows]
    classified = [r for r in published if r["reference_top5_original"]]
    assert len(classified) == 5  # exactly the configured sample
    assert all(r["psnr"] < 25 and r["psnr_outside_faces"] is None for r in published)
    summary = summarise(table, [], _reference(5, 3))
    accuracy = summary["accuracy_impact"]
    assert accuracy["images_classified"] == 5 and accuracy["sample_seed"] == 3
    assert accuracy["top1_agreement"]["value"] <= 0.4
    assert summary["checks"]["reference_top1_agreement_at_least_bound"] is False
    assert summary["passed"] is False
    # Same seed, another run: the same records are sampled.
    again = run_job(str(demo_images), str(tmp_path / "again"), detector_factory=FixedBoxesFactory(),
                    verify_factory=FixedBoxesFactory(), shard_size=4, reference_sample_size=5,
                    reference_sample_seed=3, **REFERENCE)
    assert {r["record_id"] for r in again.to_pylist() if r["reference_top5_original"]} == \
        {r["record_id"] for r in classified}
    summary = summarise(again, [], _reference(5, 3))
    assert summary["checks"]["reference_top1_agreement_at_least_bound"] is True


@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_labels_from_sidecars_and_columns(layout: str, tmp_path: Path) -> None:
    if layout == "webdataset":
        write_tar_shards(tmp_path / "in", shards=1, per_shard=4)
        source, label_field = str(tmp_path / "in" / "shard-000000.tar"), "json:label"
    else:
        write_parquet_files(tmp_path / "in", files=1, rows=4)
        source, label_field = str(tmp_path / "in" / "part-00000.parquet"), "label"
    table = run_job(source, str(tmp_path / "out"), detector_factory=FixedBoxesFactory(),
                    verify_factory=FixedBoxesFactory(), label_field=label_field, **REFERENCE)
    rows = table.to_pylist()
    assert sorted(r["reference_label"] for r in rows) == [0, 1, 2, 3], rows
    accuracy = summarise(table, [], _reference())["accuracy_impact"]
    assert accuracy["images_labelled"] == 4 and accuracy["per_class_by"] == "label"
    assert {e["class"] for e in accuracy["per_class"]} == {0, 1, 2, 3}
    # No faces replaced: only the encoder changed pixels, so nothing flips and accuracy is unchanged.
    assert accuracy["top1_agreement"]["value"] == 1.0
    assert accuracy["top1_accuracy_delta_points"]["value"] == 0.0
