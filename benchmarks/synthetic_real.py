"""Synthetic substitution on real photos: where substitutes land, whether they still read as faces,
and what identity evidence says, beside the default blur in the same run.

    python benchmarks/synthetic_real.py [--wider-dev ../shared/data/wider-dev] [--limit 100] [--sheet out.png]

Runs ``anonymize run`` (this checkout's ``conf/base.yaml``) twice on the WIDER FACE val photos of
``wider-dev`` (copied to a temporary folder only: their licence forbids copying them into the
repository): ``method: synthetic`` and the default ``gaussian``. For each it prints:
- substituted faces (manifest ``face_methods``) and why the others were blurred (``face_method_reasons``);
- substitutes placed where no ground-truth face is: a substituted box overlapping no valid
  ground-truth box (IoU < 0.3), or a second substitute on a ground-truth face already given one;
- utility: the share of substituted faces of 40 px or more that dlib's frontal face detector (a
  detector the product does not detect with) finds on the output at the box, against the same
  share of the same faces under blur;
- the identity statuses, and the independent identity check of ``benchmarks/real_photos.py``.
``--sheet`` writes a contact sheet (PNG) of substituted faces beside their blurred version for
people to look at: it shows WIDER's photos, so never commit it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_photos import (  # noqa: E402
    DEFAULT_WIDER,
    ROOT,
    IndependentIdentity,
    _iou,
    independent_check,
    prepare_input,
    run_ours,
)

IDENTIFIABLE = 40.0


def manifest_rows(output: Path) -> dict[str, dict[str, Any]]:
    import pyarrow.parquet as pq

    return {row["relative_path"]: row for row in pq.read_table(output / "manifest").to_pylist()}


def placements(rows: dict[str, dict[str, Any]], truth: dict[str, list[dict[str, Any]]]
               ) -> tuple[dict[str, int], list[str]]:
    """Substituted faces, those on no ground-truth face, and second substitutes on one face; and a
    line per misplaced substitute (photo, box, score, detectors, best IoU with a ground-truth face)."""
    counts: Counter[str] = Counter()
    misplaced: list[str] = []
    for name, boxes in truth.items():
        row = rows.get(name)
        if row is None or row["status"] != "published":
            continue
        valid = [b["box"] for b in boxes if not b.get("invalid")]
        taken: set[int] = set()
        for face, method in zip(row["faces"] or [], row.get("face_methods") or [], strict=False):
            if method != "synthetic":
                continue
            counts["substituted"] += 1
            box = (face["x1"], face["y1"], face["x2"], face["y2"])
            overlaps = [(_iou(box, tuple(b)), i) for i, b in enumerate(valid)]
            best, index = max(overlaps, default=(0.0, -1))
            if best < 0.3 or index in taken:
                kind = "on_no_face" if best < 0.3 else "duplicate"
                counts[kind] += 1
                misplaced.append(f"{kind}: {name} box {tuple(round(v) for v in box)} score {face['score']:.3f} "
                                 f"{face.get('detector', '')} (best ground-truth IoU {best:.2f})")
            else:
                taken.add(index)
    return dict(counts), misplaced


Crops = list[tuple[Image.Image, ...]]


def utility(checker: IndependentIdentity, rows: dict[str, dict[str, Any]], output: Path,
            blurred: Path, blurred_rows: dict[str, dict[str, Any]]) -> tuple[int, int, int, Crops]:
    """Substituted faces of 40 px or more; how many dlib's detector finds on the synthetic output,
    and how many at the same boxes on the blurred output; crops for the contact sheet."""
    total = found = found_blur = 0
    crops: Crops = []
    for name, row in rows.items():
        if row["status"] != "published" or blurred_rows.get(name, {}).get("status") != "published":
            continue
        faces = [f for f, m in zip(row["faces"] or [], row.get("face_methods") or [], strict=False)
                 if m == "synthetic" and min(f["x2"] - f["x1"], f["y2"] - f["y1"]) >= IDENTIFIABLE]
        if not faces:
            continue
        synthetic = np.ascontiguousarray(np.asarray(Image.open(output / "data" / name).convert("RGB")))
        blur = np.ascontiguousarray(np.asarray(Image.open(blurred / "data" / name).convert("RGB")))
        for f in faces:
            box = [f["x1"], f["y1"], f["x2"], f["y2"]]
            total += 1
            found += checker.readable(synthetic, box)
            found_blur += checker.readable(blur, box)
            side = max(box[2] - box[0], box[3] - box[1])
            area = (int(max(0, box[0] - side)), int(max(0, box[1] - side)), int(box[2] + side), int(box[3] + side))
            crops.append((Image.fromarray(synthetic).crop(area), Image.fromarray(blur).crop(area)))
    return total, found, found_blur, crops


def contact_sheet(crops: Crops, path: Path, cell: int = 160) -> None:
    columns = 4
    rows = (len(crops) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * 2 * cell, max(1, rows) * cell), (255, 255, 255))
    for i, pair in enumerate(crops):
        for j, crop in enumerate(pair):
            tile = crop.resize((cell, cell))
            sheet.paste(tile, ((i % columns) * 2 * cell + j * cell, (i // columns) * cell))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider-dev", type=Path, default=DEFAULT_WIDER)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG here (never commit it)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synthetic-real-"))
    try:
        truth, _ = prepare_input(args.wider_dev, work / "in", args.limit)
        shutil.rmtree(work / "in" / "faceless")
        checker = IndependentIdentity()
        outputs = {}
        for method in ("synthetic", "gaussian"):
            outputs[method] = work / f"out-{method}"
            seconds = run_ours(ROOT, work / "in", outputs[method], args.workers, [f"method={method}"])
            rows = manifest_rows(outputs[method])
            published = sum(1 for n in truth if rows.get(n, {}).get("status") == "published")
            statuses = Counter(s for row in rows.values() for s in row.get("face_identity_statuses") or [])
            reasons = Counter(r for row in rows.values() for r in row.get("face_method_reasons") or [] if r)
            print(f"== {method}: {seconds:.1f} s; published {published}/{len(truth)}; "
                  f"withheld: {dict(Counter(r['reason'] for r in rows.values() if r['status'] != 'published'))}")
            print(f"identity statuses: {dict(statuses)}; blurred instead of substituted: {dict(reasons)}")
            files = {n: (outputs[method] / "data" / n if rows.get(n, {}).get("status") == "published" else None)
                     for n in truth}
            print(f"independent identity check: {independent_check(checker, work / 'in', files, truth)}")
        rows = manifest_rows(outputs["synthetic"])
        counts, misplaced = placements(rows, truth)
        print(f"placements: {counts}")
        for line in misplaced:
            print(f"  {line}")
        total, found, found_blur, crops = utility(checker, rows, outputs["synthetic"], outputs["gaussian"],
                                                  manifest_rows(outputs["gaussian"]))
        print(f"utility: dlib's frontal detector finds {found}/{total} substituted faces of 40 px or more "
              f"({found / max(1, total):.1%}); the same faces blurred: {found_blur}/{total}")
        if args.sheet is not None:
            contact_sheet(crops, args.sheet)
            print(f"contact sheet: {args.sheet} (WIDER photos: do not commit)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
