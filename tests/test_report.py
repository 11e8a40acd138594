"""A run where one shard fails its Great Expectations gate: not published, reported, non-zero exit.

The report is opened in a real headless Chromium (Debian's ``chromium``) with a network log, and
the steward notebook is executed against the same run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from pipelines.cli import main
from tests.helpers import ACCOUNTABILITY_SETS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-default-apps"]
# Requests the browser itself makes at start-up whatever the page (clock check, updater, sign-in probe).
BROWSER_OWN = ("http://clients2.google.com/time/", "https://clients2.google.com/time/",
               "http://update.googleapis.com/", "https://update.googleapis.com/",
               "https://accounts.google.com/ListAccounts")
LINK = re.compile(r"""\s(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def failing_run(demo_images: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Two shards: a/ holds a broken file beside a good one (half quarantined, over the 0.4 bound)."""
    folder = tmp_path_factory.mktemp("report-in")
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "a" / "broken.jpg").write_bytes(bytes(range(256)) * 4)
    shutil.copy(demo_images / "scenes" / "coffee.jpg", folder / "a" / "coffee.jpg")
    shutil.copy(demo_images / "people" / "astronaut.jpg", folder / "b" / "astronaut.jpg")
    shutil.copy(demo_images / "people" / "two-people.jpg", folder / "b" / "two-people.jpg")
    output = tmp_path_factory.mktemp("report-out") / "out"
    status = main(["run", "--conf", str(ROOT / "conf" / "base.yaml"), "--set", f"input={folder}",
                   "--set", f"output={output}", "--set", "shard_size=2", "--set", "gate_max_quarantine_share=0.4",
                   "--set", "torch_threads=1", *ACCOUNTABILITY_SETS, "--runner=DirectRunner"])
    return output, status


def test_failed_shard_is_quarantined_the_other_published_and_the_exit_status_says_so(
        failing_run: tuple[Path, int]) -> None:
    import pyarrow.parquet as pq

    output, status = failing_run
    assert status == 1
    rows = {row["relative_path"]: row for row in pq.read_table(output / "manifest").to_pylist()}
    assert rows["a/broken.jpg"]["reason"] == "decode:undecodable"
    assert rows["a/coffee.jpg"]["status"] == "quarantined"
    assert rows["a/coffee.jpg"]["reason"] == "gate:quarantine_share_within_bound"
    assert rows["b/astronaut.jpg"]["status"] == rows["b/two-people.jpg"]["status"] == "published"
    published = sorted(str(p.relative_to(output / "data")) for p in (output / "data").rglob("*") if p.is_file())
    assert published == ["b/astronaut.jpg", "b/two-people.jpg"]
    validations = output / "report" / "validations"
    failed = json.loads((validations / "images-000000.json").read_text())
    assert failed["passed"] is False and failed["failed"] == ["quarantine_share_within_bound"]
    assert failed["thresholds"]["max_quarantine_share"] == 0.4
    assert json.loads((validations / "images-000001.json").read_text())["passed"] is True
    run = json.loads((validations / "_run.json").read_text())
    assert run["failed"] == ["no_shard_failed_gate", "withheld_share_within_bound"]  # 1 of 4 withheld: incomplete
    assert run["figures"]["faces_band_>=80"] + run["figures"]["faces_band_40-80"] >= 3


def _chromium(url: str, profile: Path, netlog: Path) -> str:
    chromium = shutil.which("chromium")
    assert chromium is not None, "chromium missing: `make test` installs Debian's chromium"
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def _page_requests(netlog: Path) -> set[str]:
    urls = set(re.findall(r'"url":"(https?://[^"]+)"', netlog.read_text(errors="replace")))
    return {url for url in urls if not url.startswith(BROWSER_OWN)}


def test_report_renders_in_chromium_with_working_links_and_no_network(
        failing_run: tuple[Path, int], tmp_path: Path) -> None:
    output, _ = failing_run
    report = output / "report"
    index = report / "index.html"
    dom = _chromium(index.as_uri(), tmp_path / "profile", tmp_path / "net-index.json")
    assert "NOT SAFE TO RELEASE" in dom
    assert re.search(r"images-000000</td><td><span class=\"fail\">FAIL", dom)
    assert re.search(r"images-000001</td><td><span class=\"pass\">PASS", dom)
    assert "quarantine_share_within_bound" in dom and "decode:undecodable" in dom
    assert dom.count('src="gallery/') == 2  # the two published outputs, never an original
    # coffee.jpg, withheld by its shard's gate only: a thumbnail of its anonymized output; none of broken.jpg
    assert dom.count('src="withheld/') == 1 and 'src="withheld/images-000000/' in dom
    links = LINK.findall(dom)
    assert "validations/images-000000.html" in links and "validations/_run.html" in links
    pages = [index]
    for link in links:
        assert not urlparse(link).scheme and not link.startswith("//"), link
        target = report / unquote(link.split("#")[0])
        assert target.is_file(), link
        if target.suffix == ".html":
            pages.append(target)
    assert _page_requests(tmp_path / "net-index.json") == set()
    for i, page in enumerate(sorted(set(pages[1:]))):
        page_dom = _chromium(page.as_uri(), tmp_path / f"profile-{i}", tmp_path / f"net-{i}.json")
        assert _page_requests(tmp_path / f"net-{i}.json") == set(), page
        for link in LINK.findall(page_dom):
            assert link.startswith("#") or (page.parent / link).resolve().is_file(), (page, link)
        if page.name == "images-000000.html":
            assert "Failed" in page_dom and "At most 40% of the shard" in page_dom
    for page in report.rglob("*.html"):
        assert not re.search(r"https?://", page.read_text()), page


def test_report_command_rebuilds_the_report(failing_run: tuple[Path, int]) -> None:
    output, _ = failing_run
    (output / "report" / "index.html").unlink()
    shutil.rmtree(output / "report" / "gallery")
    assert main(["report", str(output)]) == 1
    page = (output / "report" / "index.html").read_text()
    assert "NOT SAFE TO RELEASE" in page and "images-000000" in page
    assert len(list((output / "report" / "gallery").glob("*.jpg"))) == 2


def test_steward_notebook_executes_against_the_run(failing_run: tuple[Path, int]) -> None:
    import nbformat
    from nbclient import NotebookClient

    output, _ = failing_run
    notebook = nbformat.read(ROOT / "notebooks" / "steward_review.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "outputs committed"
    os.environ["ANONYMIZE_OUTPUT"] = str(output)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        del os.environ["ANONYMIZE_OUTPUT"]
    text = "\n".join(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells for out in cell.get("outputs", []))
    assert "4 records in 2 shards" in text
    assert "gate:quarantine_share_within_bound" in text and "FAILED" in text
    images = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert len(images) == 3  # size bands, quarantine reasons, methods


def test_report_on_object_storage_uses_relative_links_only(tmp_path: Path, s3: str) -> None:
    import numpy as np
    from PIL import Image

    from tests.fakes import FixedBoxesFactory
    from tests.helpers import jpeg_bytes, run_job
    from tests.s3server import s3_client

    client: object = s3_client(s3)
    for bucket in ("source", "anonymized"):
        client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    for i in range(3):
        image = Image.fromarray(np.full((64, 96, 3), 40 * i + 60, np.uint8))
        client.put_object(Bucket="source", Key=f"in/{i}.jpg", Body=jpeg_bytes(image))  # type: ignore
    rows = run_job("s3://source/in", "s3://anonymized/run", FixedBoxesFactory(),
                   s3_endpoint=s3, shard_size=2).to_pylist()
    assert len(rows) == 3 and all(row["status"] == "published" for row in rows), [r["reason"] for r in rows]
    assert main(["report", "s3://anonymized/run", "--s3-endpoint", s3]) == 0
    listing = client.list_objects_v2(Bucket="anonymized", Prefix="run/report/")  # type: ignore
    for item in listing["Contents"]:
        local = tmp_path / item["Key"]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(client.get_object(Bucket="anonymized", Key=item["Key"])["Body"].read())  # type: ignore
    report = tmp_path / "run" / "report"
    page = (report / "index.html").read_text()
    assert "SAFE TO RELEASE" in page and "NOT SAFE" not in page
    assert sorted(p.name for p in (report / "validations").glob("*.json")) == [
        "_run.json", "images-000000.json", "images-000001.json"]
    links = LINK.findall(page)
    assert len([link for link in links if link.startswith("gallery/")]) == 3
    for link in links:  # the copied folder works as is: every link is relative and inside it
        assert not urlparse(link).scheme and (report / link).is_file(), link
