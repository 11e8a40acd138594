"""Human review (``anonymize review``): the sample size, the Clopper-Pearson bound, the recording of
verdicts in the audit log, a marked miss quarantined through the erasure machinery, the report's
"Human review" section, and the review page in a real headless Chromium driven by Playwright."""

from __future__ import annotations

import json
import math
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from expectations.report import build_report
from pipelines.review import ReviewServer, ReviewSession, quarantine_record
from tests.fakes import FixedBoxesFactory
from tests.helpers import run_job
from transforms.audit import read_entries, verify_chain
from transforms.records import Face
from transforms.review import (
    MISSED_FACE_REASON,
    borderline_reasons,
    draw_sample,
    review_records,
    review_summary,
    sample_size,
    upper_bound,
)

ROOT = Path(__file__).resolve().parents[1]
# Debian's chromium as the probe machine starts it (no sandbox as root, no background networking).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps"]


# --- the sample size and the bound -------------------------------------------------------------

@pytest.mark.parametrize(("confidence", "margin", "size"), [(0.95, 0.05, 59), (0.95, 0.01, 299), (0.99, 0.05, 90),
                                                           (0.9, 0.1, 22), (0.95, 0.5, 5)])
def test_sample_size_is_the_smallest_whose_zero_miss_bound_meets_the_margin(confidence: float, margin: float,
                                                                              size: int) -> None:
    assert sample_size(confidence, margin) == size
    assert upper_bound(0, size, confidence) <= margin < upper_bound(0, size - 1, confidence)


@pytest.mark.parametrize(("confidence", "margin"), [(0.0, 0.05), (1.0, 0.05), (0.95, 0.0), (0.95, 1.0), (1.5, 0.1)])
def test_sample_size_rejects_impossible_targets(confidence: float, margin: float) -> None:
    with pytest.raises(ValueError, match="review: (confidence|margin)"):
        sample_size(confidence, margin)


@pytest.mark.parametrize(("misses", "n", "confidence", "expected"), [
    (0, 59, 0.95, 0.0495076),   # 1 - 0.05 ** (1/59): zero misses still bound the share
    (0, 10, 0.95, 0.2588656),
    (1, 10, 0.95, 0.3941633),   # the tabulated 90% two-sided Clopper-Pearson upper limit of 1/10
    (2, 20, 0.95, 0.2826185),
    (5, 20, 0.975, 0.4910459),  # the tabulated 95% two-sided upper limit of 5/20
    (3, 100, 0.95, 0.0757108),
    (10, 1000, 0.95, 0.0169032),
])
def test_upper_bound_matches_known_clopper_pearson_values(misses: int, n: int, confidence: float,
                                                          expected: float) -> None:
    assert upper_bound(misses, n, confidence) == pytest.approx(expected, abs=2e-7)


def test_upper_bound_matches_the_beta_quantile_and_its_edge_cases() -> None:
    from scipy.stats import beta

    for n in (1, 2, 7, 40, 333):
        for k in sorted({0, n // 3, n - 1}):
            assert upper_bound(k, n) == pytest.approx(float(beta.ppf(0.95, k + 1, n - k)), abs=1e-7), (k, n)
    assert upper_bound(0, 0) == 1.0 and upper_bound(4, 4) == 1.0
    assert upper_bound(1, 50) > upper_bound(0, 50) > upper_bound(0, 100)
    assert upper_bound(1, 50, 0.99) > upper_bound(1, 50, 0.9)
    for bad in ((-1, 5), (6, 5), (0, -1)):
        with pytest.raises(ValueError):
            upper_bound(*bad)


# --- the sample, the borderline queue, the recorded state --------------------------------------

def test_draw_sample_is_seeded_without_replacement_and_capped_at_the_population() -> None:
    ids = [f"r{i:03d}" for i in range(200)]
    first = draw_sample(ids, 59, seed=7)
    assert first == draw_sample(list(reversed(ids)), 59, seed=7)  # the order of the listing does not matter
    assert len(first) == len(set(first)) == 59 and set(first) <= set(ids)
    assert first != draw_sample(ids, 59, seed=8)
    assert sorted(draw_sample(ids[:10], 59, seed=7)) == ids[:10]


def _row(**values: Any) -> dict[str, Any]:
    return {"record_id": "r", "shard_id": "s", "shard_index": 0, "status": "published", "output_uri": "x",
            "faces": [], "face_identity_statuses": None, "face_redetected_scores": None} | values


def test_borderline_reasons_name_low_and_near_threshold_scores_and_statuses_to_see() -> None:
    face = {"x1": 0, "y1": 0, "x2": 10, "y2": 10}
    assert borderline_reasons(_row(faces=[face | {"score": 0.99}], face_identity_statuses=["measured_no_match"]),
                              0.9, 0.7, 0.9) == []
    why = borderline_reasons(_row(faces=[face | {"score": 0.75}, face | {"score": 0.99}],
                                  face_identity_statuses=["unmeasurable_no_face", "matched"],
                                  face_redetected_scores=[0.85, 0.0]), 0.9, 0.7, 0.9)
    assert any("under 0.9 (lowest 0.75)" in w for w in why)
    assert any("above detector_score_threshold 0.7" in w for w in why)
    assert any("just under verify_score_threshold 0.9" in w for w in why)
    assert any("(matched)" in w for w in why) and any("(unmeasurable_no_face)" in w for w in why)


def _entries(*specs: dict[str, Any]) -> list[dict[str, Any]]:
    sample = {"kind": "review_sample", "review_id": "A", "seed": 3, "confidence": 0.95, "margin": 0.05,
              "target_size": 59, "population": 4, "sample": ["a", "b", "c"],
              "sample_shards": {"a": "s0", "b": "s0", "c": "s1"}}
    return [sample, *({"review_id": "A", "time": "2026-12-01T10:00:00+00:00"} | s for s in specs)]


def test_review_summary_counts_the_latest_verdict_a_miss_stands_and_only_the_sample_bounds() -> None:
    entries = _entries(
        {"kind": "review_verdict", "record_id": "a", "verdict": "ok", "reviewer": "Ann"},
        {"kind": "review_verdict", "record_id": "a", "verdict": "missed_face", "reviewer": "Ann"},
        {"kind": "review_verdict", "record_id": "a", "verdict": "ok", "reviewer": "Bob"},  # a miss stands
        {"kind": "review_verdict", "record_id": "b", "verdict": "not_a_face", "face_index": 0, "reviewer": "Bob"},
        {"kind": "review_verdict", "record_id": "c", "verdict": "ok", "reviewer": "Bob"},
        {"kind": "review_verdict", "record_id": "z", "verdict": "ok", "reviewer": "Bob"},  # borderline, not sample
        {"kind": "review_signoff", "shard_id": "s1", "reviewer": "Bob"},
    )
    summary = review_summary(entries, ["s0", "s1", "s2"])
    assert summary["reviewed"] and summary["verdict"] == "REVIEWED"
    assert (summary["sample_reviewed"], summary["sample_misses"]) == (2, 1)
    assert summary["upper_bound"] == pytest.approx(upper_bound(1, 2))
    assert (summary["images_reviewed"], summary["misses_found"], summary["not_a_face_marks"]) == (3, 1, 1)
    shards = {s["shard_id"]: s for s in summary["shards"]}
    assert (shards["s0"]["sampled"], shards["s0"]["reviewed"], shards["s0"]["misses"]) == (2, 1, 1)
    assert shards["s1"]["signed_off"]["by"] == "Bob" and shards["s0"]["signed_off"] is None
    assert shards["s2"]["sampled"] == 0
    assert review_records(entries)[0].sample_counts() == (2, 1)


def test_review_summary_says_not_reviewed_without_a_sample_verdict() -> None:
    assert review_summary([], ["s0"])["verdict"] == "NOT REVIEWED"
    drawn = review_summary(_entries(), ["s0"])
    assert not drawn["reviewed"] and drawn["verdict"] == "NOT REVIEWED" and drawn["upper_bound"] == 1.0
    borderline_only = review_summary(_entries({"kind": "review_verdict", "record_id": "z", "verdict": "ok"}), ["s0"])
    assert borderline_only["verdict"] == "NOT REVIEWED" and borderline_only["images_reviewed"] == 1


# --- a run's output, reviewed --------------------------------------------------------------------

class _BoxesByWidth:
    name = "by-width"

    def __init__(self, boxes: dict[int, Sequence[tuple[float, float, float, float, float]]]) -> None:
        self._boxes = boxes

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        return [[Face(*box, detector=self.name) for box in self._boxes.get(image.width, ())] for image in images]

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": "test", "weights_sha256": ""}


class BoxesByWidthFactory:
    """A cheap stand-in detector: fixed boxes for the demo images of a given width (the 512 px
    portraits, the wide group photos), none for the scenes."""

    BOXES: dict[int, Sequence[tuple[float, float, float, float, float]]] = {
        512: [(180.0, 40.0, 320.0, 220.0, 0.98)],
        870: [(60.0, 40.0, 180.0, 180.0, 0.97), (480.0, 60.0, 580.0, 170.0, 0.78)],  # a low score: borderline
        1024: [(180.0, 40.0, 320.0, 220.0, 0.99)],  # the cameraman on the right is "missed"
    }

    def __call__(self) -> _BoxesByWidth:
        return _BoxesByWidth(self.BOXES)

    def info(self) -> dict[str, str]:
        return {"name": "by-width", "version": "test", "weights_sha256": ""}


@pytest.fixture
def output(demo_images: Path, tmp_path: Path) -> Path:
    """The demo dataset anonymized with the stand-in detector (two shards of 4 and 3), with its
    report; one per test, since a review changes it (and its manifests name their own paths)."""
    output = tmp_path / "out"
    rows = run_job(str(demo_images), str(output), detector_factory=BoxesByWidthFactory(),
                   verify_factory=FixedBoxesFactory(), identity_check=False, shard_size=4)
    assert sorted(rows.column("status").to_pylist()) == ["published"] * 7
    build_report(str(output))
    return output


def _manifest(output: Path) -> dict[str, dict[str, Any]]:
    return {row["relative_path"]: row for row in pq.read_table(output / "manifest").to_pylist()}


def test_quarantine_record_withdraws_a_published_output_and_keeps_its_lineage(output: Path) -> None:
    row = _manifest(output)["people/two-people.jpg"]
    done = quarantine_record(str(output), row, "review-1")
    assert done["quarantined"] and done["problems"] == [] and done["files_removed"] == 1
    after = _manifest(output)["people/two-people.jpg"]
    assert (after["status"], after["reason"], after["output_uri"]) == ("quarantined", MISSED_FACE_REASON, None)
    assert after["source_uri"] == row["source_uri"] and after["faces"] == row["faces"]
    assert not (output / "data" / "people" / "two-people.jpg").exists()
    assert (output / "data" / "people" / "astronaut.jpg").exists()
    page = (output / "report" / "index.html").read_text()
    assert "review:missed_face" in page and "a reviewer marked a face the detectors missed" in page


@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_quarantine_record_rewrites_a_tar_or_parquet_shard_without_the_record(layout: str, tmp_path: Path) -> None:
    from tests.datasets import write_parquet_files, write_tar_shards

    source = tmp_path / "in"
    if layout == "webdataset":
        write_tar_shards(source, 1, 3)
    else:
        write_parquet_files(source, 1, 3)
    output = tmp_path / "out"
    pattern = "*.tar" if layout == "webdataset" else "*.parquet"
    rows = run_job(str(source / pattern), str(output), detector_factory=FixedBoxesFactory([(60, 40, 160, 160, 0.95)]),
                   verify_factory=FixedBoxesFactory(), identity_check=False).to_pylist()
    rows.sort(key=lambda r: r["shard_index"])
    assert [r["status"] for r in rows] == ["published"] * 3
    done = quarantine_record(str(output), rows[1], "review-1", rebuild_report=False)
    assert done["quarantined"] and done["problems"] == [] and done["data_rewritten"]
    after = sorted(pq.read_table(output / "manifest").to_pylist(), key=lambda r: r["shard_index"])
    assert [(r["status"], r["reason"]) for r in after] == [
        ("published", None), ("quarantined", MISSED_FACE_REASON), ("published", None)]
    data_file = next((output / "data").rglob("*.tar" if layout == "webdataset" else "*.parquet"))
    if layout == "webdataset":
        import tarfile

        with tarfile.open(data_file) as tar:
            keys = sorted({m.name.split(".", 1)[0] for m in tar.getmembers()})
        assert keys == sorted(r["source_uri"].split("#", 1)[1] for r in (rows[0], rows[2]))
    else:
        import hashlib

        table = pq.read_table(data_file).to_pylist()
        assert [hashlib.sha256(r["image"]["bytes"]).hexdigest() for r in table] == \
            [rows[0]["output_sha256"], rows[2]["output_sha256"]]
        assert [r["output_uri"].rsplit("#", 1)[1] for r in after if r["output_uri"]] == ["row=0", "row=1"]
    again = quarantine_record(str(output), after[0], "review-2", rebuild_report=False)  # the shard still works
    assert again["quarantined"] and again["problems"] == []


def _request(url: str, body: dict[str, Any] | None = None, token: str = "", host: str = "") -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} | ({"X-Review-Token": token} if token else {}) | \
        ({"Host": host} if host else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback test server
            raw = response.read()
            return response.status, json.loads(raw) if response.headers["Content-Type"] == "application/json" else raw
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(params=[False], ids=["originals-off"])
def served(output: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ReviewSession, str]]:
    import threading

    session = ReviewSession(str(output), allow_originals=request.param)
    session.open(seed=11, confidence=0.95, margin=0.5, operator="steward")
    server = ReviewServer(session, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield session, server.url
    finally:
        server.shutdown()
        server.server_close()


def test_api_records_verdicts_in_the_hash_chain_and_refuses_what_it_must(served: tuple[ReviewSession, str],
                                                                          output: Path) -> None:
    session, url = served
    token = session.token
    assert _request(url + "api/state")[0] == 403  # no token
    assert _request(url + "api/state", token="wrong")[0] == 403
    assert _request(url + "api/state", token=token, host="evil.example:80")[0] == 403  # DNS rebinding
    status, state = _request(url + "api/state", token=token)
    assert status == 200 and state["seed"] == 11 and state["originals_allowed"] is False
    sample = [it for it in state["items"] if it["queue"] == "sample"]
    assert len(sample) == 5  # sample_size(0.95, 0.5) of the 7 published images
    manifest = _manifest(output)
    outside = {r["record_id"] for r in manifest.values()} - {it["record_id"] for it in sample}
    low = {r["record_id"] for r in manifest.values() if any(f["score"] < 0.9 for f in r["faces"])}
    borderline = [it for it in state["items"] if it["queue"] == "borderline"]
    assert {it["record_id"] for it in borderline} == outside & low  # four-people's 0.78 box, when not sampled
    assert all("scored under 0.9 (lowest 0.78)" in it["why"][0] for it in borderline)
    first = sample[0]["record_id"]
    assert _request(url + "api/verdict", {"record_id": first, "verdict": "ok"}, token)[0] == 409  # no name
    assert _request(url + "api/verdict", {"record_id": first, "verdict": "maybe", "reviewer": "A"}, token)[0] == 409
    assert _request(url + "api/original", {"record_id": first, "reviewer": "A"}, token)[0] == 409  # not allowed
    status, entry = _request(url + "api/verdict", {"record_id": first, "verdict": "ok", "reviewer": "Ann Steward"},
                             token)
    assert status == 200 and entry["kind"] == "review_verdict" and entry["operator"] == "Ann Steward"
    image_status, image = _request(url + f"image/{first}?token={token}")
    assert image_status == 200 and image[:2] in (b"\xff\xd8", b"\x89P", b"RI")
    assert _request(url + f"image/{first}")[0] == 403
    kinds = [e["kind"] for e in read_entries(str(output))]
    assert kinds == ["review_sample", "review_opened", "review_verdict"]
    assert verify_chain(str(output)).ok
    recorded = read_entries(str(output))[0]
    assert recorded["seed"] == 11 and recorded["sample"] == [it["record_id"] for it in sample]
    assert (recorded["population"], recorded["population_with_faces"]) == (7, 5)  # drawn over both kinds
    assert recorded["sample_with_faces"] == sum(1 for it in sample if it["faces"])
    assert recorded["sample_with_faces"] + recorded["sample_without_faces"] == 5


@pytest.mark.parametrize("served", [True], ids=["originals-on"], indirect=True)
def test_an_original_is_shown_only_on_request_and_each_showing_is_recorded(served: tuple[ReviewSession, str],
                                                                            output: Path) -> None:
    session, url = served
    status, state = _request(url + "api/state", token=session.token)
    assert state["originals_allowed"] is True
    item = next(it for it in state["items"] if it["faces"])
    before = len(read_entries(str(output)))
    assert _request(url + "api/original", {"record_id": item["record_id"]}, session.token)[0] == 409  # no name
    assert len(read_entries(str(output))) == before  # a refused request records nothing and shows nothing
    status, data = _request(url + "api/original", {"record_id": item["record_id"], "reviewer": "Ann"}, session.token)
    source = Path(_manifest(output)[item["relative_path"]]["source_uri"]).read_bytes()
    assert status == 200 and data == source  # the original, byte for byte
    shown = read_entries(str(output))[-1]
    assert (shown["kind"], shown["record_id"], shown["reviewer"]) == ("review_original_shown", item["record_id"], "Ann")
    opened = [e for e in read_entries(str(output)) if e["kind"] == "review_opened"]
    assert opened[-1]["originals_allowed"] is True
    status, entry = _request(url + "api/verdict", {"record_id": item["record_id"], "verdict": "not_a_face",
                                                   "face_index": 0, "reviewer": "Ann", "original_shown": True},
                             session.token)
    assert status == 200 and entry["face"]["x1"] == item["faces"][0]["x1"] and entry["original_shown"] is True
    assert _request(url + "api/verdict", {"record_id": item["record_id"], "verdict": "not_a_face", "face_index": 3,
                                          "reviewer": "Ann"}, session.token)[0] == 409
    summary = session.finish()
    assert (summary["not_a_face_marks"], summary["originals_shown"], summary["images_reviewed"]) == (1, 1, 0)
    page = (output / "report" / "index.html").read_text()
    assert "originals shown to a reviewer (recorded)</th><td>1</td>" in page


def test_a_resumed_review_keeps_its_sample_and_a_new_seed_draws_another(output: Path) -> None:
    first = ReviewSession(str(output)).open(seed=5, margin=0.3)
    again = ReviewSession(str(output)).open(margin=0.3)
    assert again.review_id == first.review_id and again.sample == first.sample
    other = ReviewSession(str(output)).open(seed=6, margin=0.3)
    assert other.review_id != first.review_id
    assert [e["kind"] for e in read_entries(str(output))].count("review_sample") == 2
    with pytest.raises(ValueError, match="margin"):
        ReviewSession(str(output)).open(margin=0.0)


# --- the page in a real browser ------------------------------------------------------------------

def _launch(playwright: Any) -> Any:
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium missing: `make test` installs Debian's chromium"
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)


def test_review_page_in_chromium_records_verdicts_quarantines_a_miss_and_bounds_the_report(
        output: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from playwright.sync_api import expect, sync_playwright

    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "review", str(output), "--port", "0",
                               "--seed", "42", "--margin", "0.5", "--operator", "steward"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("review page: http://127.0.0.1:"), line + (server.stderr.read() if server.stderr else "")
        url = line.split(": ", 1)[1].strip()
        recorded = read_entries(str(output))[0]
        sample = recorded["sample"]
        rows = {r["record_id"]: r for r in _manifest(output).values()}
        names = [rows[r]["relative_path"] for r in sample]
        # The sample depends on the record ids (their paths): pick the images by what they hold.
        missed = "people/two-people.jpg" if "people/two-people.jpg" in names else names[0]
        marked = next(name for name, r in zip(names, sample, strict=True) if name != missed and rows[r]["faces"])
        with sync_playwright() as playwright:
            browser = _launch(playwright)
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(url)
            page.wait_for_selector("#queue li")
            assert page.locator("#queue li[data-queue=sample]").count() == len(sample) == 5
            assert page.locator("#original").is_hidden()  # originals never offered by default
            page.keyboard.press("o")  # no name yet: refused, nothing recorded
            assert "Type your name first" in page.text_content("#message")
            page.fill("#reviewer", "Ann Steward")
            page.locator("#reviewer").blur()
            reviewed = 0
            for i, name in enumerate(names):
                page.click(f"#queue li[data-queue=sample] >> nth={i}")
                expect(page.locator("#photo")).to_have_js_property("complete", True)
                expect(page.locator("#title")).to_contain_text(name)
                if name == missed:
                    box = page.locator("#overlay").bounding_box()
                    assert box is not None
                    x, y = box["x"] + box["width"] * 0.72, box["y"] + box["height"] * 0.2
                    page.mouse.move(x, y)
                    page.mouse.down()
                    page.mouse.move(x + 60, y + 30)
                    page.mouse.move(x + 110, y + 120)
                    page.mouse.up()
                    assert page.locator("#overlay .drawn").count() == 1
                    page.screenshot(path=str(tmp_path / "drawn.png"))
                    page.keyboard.press("m")
                    expect(page.locator("#message")).to_contain_text("quarantined (review:missed_face)",
                                                                     timeout=120_000)
                else:
                    if name == marked:  # select its replaced region by a click; mark it not a face
                        face = rows[sample[i]]["faces"][0]
                        box = page.locator("#overlay").bounding_box()
                        assert box is not None
                        k = box["width"] / rows[sample[i]]["width"]
                        page.mouse.click(box["x"] + (face["x1"] + face["x2"]) / 2 * k,
                                         box["y"] + (face["y1"] + face["y2"]) / 2 * k)
                        expect(page.locator("#overlay .face.selected")).to_have_count(1)
                        page.keyboard.press("n")
                        expect(page.locator("#message")).to_contain_text(f"not_a_face for {name}")
                        expect(page.locator("#overlay .face.not-a-face")).to_have_count(1)
                    page.keyboard.press("o")
                    expect(page.locator("#message")).to_contain_text(f"ok for {name}")
                reviewed += 1
            expect(page.locator("#progress")).to_contain_text(f"Sample {reviewed} / 5 reviewed, 1 missed")
            clean = next(s for s in sorted(set(recorded["sample_shards"].values()))
                         if s != rows[next(r for r in sample if rows[r]["relative_path"] == missed)]["shard_id"])
            dirty = rows[next(r for r in sample if rows[r]["relative_path"] == missed)]["shard_id"]
            expect(page.locator(f"#shards tr[data-shard='{dirty}'] button.signoff")).to_be_disabled()
            page.click(f"#shards tr[data-shard='{clean}'] button.signoff")
            expect(page.locator("#message")).to_contain_text(f"shard {clean} signed off")
            page.screenshot(path=str(tmp_path / "reviewed.png"))
            page.click("#finish")
            expect(page.locator("#message")).to_contain_text("Report updated: REVIEWED", timeout=120_000)
            assert all(r.startswith(url) for r in requests), [r for r in requests if not r.startswith(url)]
            report = browser.new_page()
            report.goto((output / "report" / "index.html").as_uri())
            bound_text = report.text_content("#review-bound") or ""
            report.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert report.text_content("#reviewed") == "REVIEWED"
            signed = {row.locator("td").nth(0).text_content(): row.locator("td").nth(4).text_content()
                      for row in report.locator("#review-shards tr").all()[1:]}
            bound = float(report.get_attribute("#review-bound", "data-bound") or "nan")
            browser.close()
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=180)
    assert server.returncode == 0 and "review: REVIEWED: 5 of the 5 images of the random audit sample" in out
    assert bound == pytest.approx(upper_bound(1, 5), abs=1e-6) and "1 of 5" in bound_text
    assert math.isclose(bound, 0.6574, abs_tol=1e-3)  # beta.ppf(0.95, 2, 4)
    verdicts = [e for e in read_entries(str(output)) if e["kind"] == "review_verdict"]
    image_verdicts = [e for e in verdicts if e["verdict"] != "not_a_face"]
    assert [e["verdict"] for e in image_verdicts].count("missed_face") == 1 and len(image_verdicts) == 5
    assert [e["relative_path"] for e in verdicts if e["verdict"] == "not_a_face"] == [marked]
    assert signed[clean] is not None and signed[clean].startswith("signed off by Ann Steward")
    assert signed[dirty] == "not signed off"
    signoff = [e for e in read_entries(str(output)) if e["kind"] == "review_signoff"]
    assert [(e["shard_id"], e["reviewer"]) for e in signoff] == [(clean, "Ann Steward")]
    miss = next(e for e in verdicts if e["verdict"] == "missed_face")
    assert miss["reviewer"] == miss["operator"] == "Ann Steward" and miss["in_sample"]
    assert miss["relative_path"] == missed and len(miss["boxes"]) == 1
    x1, y1, x2, y2 = miss["boxes"][0]
    width = rows[miss["record_id"]]["width"]
    assert 0.6 * width < x1 < x2 and y2 - y1 > 20
    assert miss["quarantine"]["quarantined"] and miss["quarantine"]["problems"] == []
    assert verify_chain(str(output)).ok
    after = _manifest(output)[missed]
    assert (after["status"], after["reason"], after["output_uri"]) == ("quarantined", MISSED_FACE_REASON, None)
    assert not (output / "data" / missed).exists()
    summary = json.loads((output / "report" / "summary.json").read_text())
    assert summary["verdicts"]["review"]["sample_misses"] == 1


def test_review_command_fails_before_serving_on_a_bad_target_or_an_output_without_manifests(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["review", str(tmp_path), "--confidence", "1.5", "--port", "0"]) == 2
    assert "review: confidence must be between 0 and 1" in capsys.readouterr().err
    assert main(["review", str(tmp_path / "nothing"), "--port", "0"]) == 2
    assert "review: no manifest rows under" in capsys.readouterr().err
    assert not (tmp_path / "nothing" / "audit").exists()  # nothing recorded for a refused start
