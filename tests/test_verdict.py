"""The steward's two verdicts: privacy (what was published is safe) and completeness (how much of
the input was published, what was withheld and why), with the run-level bound on the withheld share."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from expectations.report import WITHHELD_LISTED, render_withheld
from expectations.suites import GateThresholds
from expectations.verdict import completeness_verdict, not_measured_lines, privacy_verdict, verdict_lines
from pipelines.cli import main
from pipelines.config import ConfigError, build_options
from pipelines.settings import gate_thresholds_for
from tests.fakes import FixedBoxesFactory
from tests.helpers import ACCOUNTABILITY, ACCOUNTABILITY_SETS, BASE_CONF, jpeg_bytes
from transforms.detection import DetectorStack
from transforms.manifest import MANIFEST_SCHEMA
from transforms.summary import face_identity_statuses, summarise

FAILING_WIDTH = 77  # the fixed-box test detector raises on images this wide: "detect:detector_error:..."


def _face(side: float, score: float = 0.99) -> dict[str, Any]:
    return {"x1": 0.0, "y1": 0.0, "x2": side, "y2": side, "score": score, "detector": "fixed"}


def _row(i: int, status: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"record_id": f"r{i}", "shard_id": "images-000000", "shard_index": i, "source_uri": f"/in/{i}.jpg",
            "relative_path": f"{i}.jpg", "status": status, "reason": reason, "faces": [], "face_count": 0,
            "run_id": "run-1", **extra}


def _table(rows: list[dict[str, Any]], schema: pa.Schema = MANIFEST_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def test_withheld_share_counts_neither_unreadable_inputs_nor_exclusions() -> None:
    rows = [_row(0, "published"), _row(1, "published"), _row(2, "quarantined", "decode:undecodable"),
            _row(3, "quarantined", "read:corrupt_tar"), _row(4, "excluded", "exclusion:subject"),
            _row(5, "quarantined", "verify:identity_match"), _row(6, "quarantined", "gate:no_published_metadata"),
            _row(7, "published")]
    summary = summarise(_table(rows), [])
    assert summary["withheld"] == 2 and summary["quarantined"] == 4
    assert summary["withheld_share"] == pytest.approx(2 / 8)
    assert summary["withheld_reasons"] == {"gate:no_published_metadata": 1, "verify:identity_match": 1}


def test_completeness_says_how_many_were_withheld_and_why() -> None:
    rows = [_row(i, "published") for i in range(10)]
    rows += [_row(10 + i, "quarantined", "verify:identity_match") for i in range(13)]
    summary = summarise(_table(rows), [])
    verdict = completeness_verdict(summary, False, 0.05)
    assert verdict["verdict"] == "INCOMPLETE" and verdict["withheld"] == 13
    assert verdict["text"].startswith(
        "13 of 23 images withheld (56.5%): 13 because a replaced face could still match its original")
    assert "over the bound of 5% (gate_max_withheld_share)" in verdict["text"]
    rows.append(_row(23, "quarantined", "decode:undecodable"))
    text = completeness_verdict(summarise(_table(rows), []), False, 0.05)["text"]
    assert "not counted as withheld: 1 could not be read as images" in text


def test_privacy_says_what_was_checked_or_why_not() -> None:
    assert privacy_verdict(True, 1, [])["text"].startswith("the 1 image published was searched for faces")
    assert privacy_verdict(True, 0, [])["text"] == "no image was published"
    unsafe = privacy_verdict(False, 3, ["shard a failed its gate", "run check failed: x"])
    assert unsafe["verdict"] == "NOT SAFE TO RELEASE"
    assert unsafe["text"] == "shard a failed its gate; run check failed: x"
    assert "check failed" in privacy_verdict(False, 3, [])["text"]


def test_identity_statuses_read_the_new_column_and_fall_back_on_older_manifests() -> None:
    faces = [_face(10), _face(60), _face(60), _face(60)]
    old = _row(0, "published", faces=faces, face_count=4, identity_check="checked",
               face_identity_distances=[0.1, 0.3, 0.9])
    assert face_identity_statuses(old) == ["unmeasurable_small", "matched", "measured_no_match", "unmeasured"]
    assert face_identity_statuses(old | {"identity_check": "skipped"}) == ["not_checked"] * 4
    schema = MANIFEST_SCHEMA.append(pa.field("face_identity_statuses", pa.list_(pa.string())))
    new = old | {"face_identity_statuses": ["unmeasurable_small", "removed_by_construction",
                                            "measured_no_match", "unmeasurable_no_face"]}
    low = _row(1, "published", faces=[_face(60, score=0.5)], face_count=1, identity_check="checked",
               face_identity_distances=[0.8], face_identity_statuses=["measured_no_match"])
    figures = summarise(_table([new, low], schema), [])["not_measured"]
    assert figures["identity_statuses"] == {"measured_no_match": 2, "removed_by_construction": 1,
                                            "unmeasurable_no_face": 1, "unmeasurable_small": 1}
    assert (figures["published_faces"], figures["low_score_detections"]) == (5, 1)
    lines = not_measured_lines(figures)
    assert lines[0].startswith("Recall was not measured on this run: there is no ground truth")
    assert "1 too small for the identity check" in lines[1]
    assert lines[2].startswith("1 of the 5 faces in published images had a detection score under 0.9")


def test_withheld_section_lists_records_past_the_cap_in_the_manifest_only() -> None:
    rows = [_row(i, "quarantined", "verify:residual_faces", face_count=1) for i in range(WITHHELD_LISTED + 3)]
    section = render_withheld(rows)
    assert section.count("<td>verify:residual_faces</td>") == WITHHELD_LISTED
    assert "and 3 more with this reason: see the manifest" in section
    assert render_withheld([_row(0, "published")]) == '<p id="withheld-none">No image was withheld.</p>'


def test_the_bound_is_a_setting_that_names_its_key(tmp_path: Path) -> None:
    required = [f"input={tmp_path}", f"output={tmp_path}/out", *(f"{k}={v}" for k, v in ACCOUNTABILITY.items())]
    options, _ = build_options([BASE_CONF], required)
    assert gate_thresholds_for(options).max_withheld_share == 0.05
    with pytest.raises(ConfigError, match="gate_max_withheld_share"):
        build_options([BASE_CONF], [*required, "gate_max_withheld_share=1.5"])
    with pytest.raises(ValueError, match="max_withheld_share"):
        GateThresholds(max_withheld_share=-0.1)


# ---- whole runs, through the command line, the report opened in headless Chromium ------------------------


@pytest.fixture(scope="module")
def withheld_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six records: four good images, one the detector fails on (withheld), one undecodable (not counted)."""
    folder = tmp_path_factory.mktemp("verdict-in")
    for i in range(4):
        (folder / f"good-{i}.jpg").write_bytes(jpeg_bytes(Image.fromarray(np.full((64, 96, 3), 50 + 30 * i,
                                                                                   np.uint8))))
    (folder / "detector-fails.jpg").write_bytes(jpeg_bytes(Image.fromarray(np.full((64, FAILING_WIDTH, 3), 90,
                                                                                    np.uint8))))
    (folder / "broken.jpg").write_bytes(bytes(range(256)) * 4)
    return folder


@pytest.fixture(scope="module")
def fixed_detector() -> Iterator[None]:
    """The command line's detector replaced by the fixed-box test detector (no face; raises on one width)."""
    with pytest.MonkeyPatch.context() as patch:
        fixed = FixedBoxesFactory(raise_on_width=FAILING_WIDTH)
        patch.setattr("pipelines.cli.detector_stack_for", lambda options: DetectorStack(fixed, fixed, True))
        yield


def _run(folder: Path, output: Path, *sets: str) -> int:
    overrides = [arg for value in (f"input={folder}", f"output={output}", "torch_threads=1", *sets)
                 for arg in ("--set", value)]
    return main(["run", "--conf", BASE_CONF, *overrides, *ACCOUNTABILITY_SETS, "--runner=DirectRunner"])


def _banner(dom: str) -> tuple[str, str]:
    privacy = re.search(r'<span id="verdict"[^>]*>([^<]*)</span>', dom)
    completeness = re.search(r'<span id="completeness"[^>]*>([^<]*)</span>', dom)
    assert privacy and completeness, "verdict banner missing"
    return privacy.group(1).strip(), completeness.group(1).strip()


@pytest.mark.slow
def test_a_run_over_the_withheld_bound_exits_1_safe_but_incomplete(
        withheld_input: Path, fixed_detector: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_report import _chromium, _page_requests

    output = tmp_path / "out"
    assert _run(withheld_input, output) == 1
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-3:]
    assert last[0].startswith("privacy: SAFE TO RELEASE: every one of the 4 images published")
    assert last[1].startswith("completeness: INCOMPLETE: 1 of 6 images withheld (16.7%): 1 because face "
                              "detection failed on it; not counted as withheld: 1 could not be read as images")
    assert last[2].startswith("not measured: Recall was not measured on this run")
    assert "anonymize: run INCOMPLETE" in err and "run expectations FAILED" not in err
    assert sorted(p.name for p in (output / "data").rglob("*.jpg")) == [f"good-{i}.jpg" for i in range(4)]

    summary = json.loads((output / "report" / "summary.json").read_text())
    verdicts = summary["verdicts"]
    assert (verdicts["privacy"]["verdict"], verdicts["completeness"]["verdict"]) == ("SAFE TO RELEASE", "INCOMPLETE")
    assert verdicts["completeness"]["withheld_reasons"] == {"detect:detector_error:RuntimeError": 1}
    run = json.loads((output / "report" / "validations" / "_run.json").read_text())
    assert run["failed"] == ["withheld_share_within_bound"]
    assert run["figures"]["withheld_share"] == pytest.approx(1 / 6)

    dom = _chromium((output / "report" / "index.html").as_uri(), tmp_path / "profile", tmp_path / "net.json")
    assert _page_requests(tmp_path / "net.json") == set()
    assert _banner(dom) == ("SAFE TO RELEASE", "INCOMPLETE")
    assert "Completeness: INCOMPLETE.</strong>" in dom and "1 of 6 images withheld" in dom
    groups = dict(re.findall(r'<section class="withheld-group" data-reason="([^"]+)">(.*?)</section>', dom, re.S))
    assert set(groups) == {"detect:detector_error:RuntimeError", "decode:undecodable"}
    failing = groups["detect:detector_error:RuntimeError"]
    assert f"<td>{withheld_input / 'detector-fails.jpg'}</td><td>detect:detector_error:RuntimeError</td>" \
           "<td>not searched</td>" in failing
    assert "(counted in the withheld share)" in failing and "What you can do:" in failing
    assert f"<td>{withheld_input / 'broken.jpg'}</td><td>decode:undecodable</td>" in groups["decode:undecodable"]
    assert "not counted in the withheld share" in groups["decode:undecodable"]
    assert 'src="withheld' not in dom and dom.count('src="gallery/') == 4  # never an original
    assert main(["dpia", str(output)]) == 0  # the DPIA material states both verdicts
    dpia = (output / "report" / "dpia.md").read_text()
    assert "- Privacy: SAFE TO RELEASE: every one" in dpia and "- Completeness: INCOMPLETE: 1 of 6 images" in dpia
    assert "| gate_max_withheld_share | 0.05 |" in dpia


@pytest.mark.slow
def test_a_run_within_the_bound_says_safe_and_complete(
        withheld_input: Path, fixed_detector: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_report import _chromium

    output = tmp_path / "out"
    assert _run(withheld_input, output, "gate_max_withheld_share=0.2") == 0
    last = capsys.readouterr().out.strip().splitlines()[-3:]
    assert last[1].startswith("completeness: COMPLETE: 1 of 6 images withheld (16.7%)")
    assert "within the bound of 20% (gate_max_withheld_share)" in last[1]
    summary = json.loads((output / "report" / "summary.json").read_text())
    assert verdict_lines(summary["verdicts"]) == last
    dom = _chromium((output / "report" / "index.html").as_uri(), tmp_path / "profile", tmp_path / "net.json")
    assert _banner(dom) == ("SAFE TO RELEASE", "COMPLETE")
    assert "Privacy: SAFE TO RELEASE.</strong>" in dom and "detector-fails.jpg" in dom
    shutil.rmtree(output / "report" / "gallery")
    assert main(["report", str(output)]) == 0  # the rebuilt report keeps the bound the run used
    assert _banner((output / "report" / "index.html").read_text()) == ("SAFE TO RELEASE", "COMPLETE")
