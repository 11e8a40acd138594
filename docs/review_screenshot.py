"""Generate the README's screenshots of the review page and the report's Human review section.

    make demo && python docs/review_screenshot.py demo-output

Opens a review of ``demo-output`` (seed 2026; recorded in its audit log like any review), marks the
first images of the sample OK as a reviewer would, selects a replaced region on an image with
people, and screenshots the page in headless Chromium (Debian's, driven by Playwright); then
rebuilds the report and screenshots its "Human review" section. Only the demo's anonymized outputs
appear: the demo images are scikit-image's public-domain photos, never WIDER images.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.review import ReviewServer, ReviewSession  # noqa: E402 - after the path set-up

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(ROOT / "demo-output"), help="a run's output (make demo)")
    parser.add_argument("--page", default=str(ROOT / "docs" / "review-page.png"))
    parser.add_argument("--report", default=str(ROOT / "docs" / "review-report.png"))
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.stderr.write("chromium missing: make system-deps installs Debian's chromium\n")
        return 2
    session = ReviewSession(args.output)
    session.open(seed=args.seed, operator="docs/review_screenshot.py")
    server = ReviewServer(session, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(server.url)
            page.wait_for_selector("#queue li")
            page.fill("#reviewer", "A. Steward")
            page.locator("#reviewer").blur()
            sample = page.locator("#queue li[data-queue=sample]")
            names = [sample.nth(i).locator("span").first.text_content() or "" for i in range(sample.count())]
            target = next((i for i, name in enumerate(names) if "four-people" in name), 0)
            for i in [j for j in range(len(names)) if j != target][:3]:
                sample.nth(i).click()
                expect(page.locator("#photo")).to_have_js_property("complete", True)
                page.keyboard.press("o")
                expect(page.locator("#message")).to_contain_text(f"ok for {names[i]}")
            sample.nth(target).click()
            expect(page.locator("#photo")).to_have_js_property("complete", True)
            face = page.locator("#overlay .face").first
            if face.count():
                box = face.bounding_box()
                if box is not None:
                    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.screenshot(path=args.page)
            page.click("#finish")
            expect(page.locator("#message")).to_contain_text("Report updated", timeout=180_000)
            report = browser.new_page(viewport={"width": 1100, "height": 900})
            report.goto((Path(args.output).resolve() / "report" / "index.html").as_uri())
            top = report.locator("#human-review").bounding_box()
            bottom = report.locator("#review-shards").bounding_box()
            assert top is not None and bottom is not None
            report.screenshot(path=args.report, full_page=True, clip={"x": 0, "y": top["y"] - 10, "width": 1100,
                                                      "height": bottom["y"] + bottom["height"] - top["y"] + 20})
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    sys.stdout.write(f"wrote {args.page} and {args.report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
