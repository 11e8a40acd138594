"""Synthetic substitution on real photos: where substitutes land, whether they still read as faces,
and what identity evidence says, beside the default blur in the same run.

    python benchmarks/synthetic_real.py [--wider-dev ../shared/data/wider-dev] [--limit 100] [--sheet out.png]
                                        [--set key=value ...] [--no-blur]

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
``--set`` passes a setting to the synthetic run only (e.g. ``--set synthetic_soften=0``);
``--no-blur`` skips the blur run (no "same faces blurred" figure, no contact sheet).
``--quick "k=v k=v" ...`` instead substitutes every ground-truth face of 40 px or more that dlib
reads on the original, alone, with one seed, under each given variant of the default synthetic
policy (``""``: the defaults), JPEG 95, and prints per variant the share dlib finds, the faces
still within 0.6 of their original, and how the substitute's edge blur and noise compare with
the ring of photo around it, beside the same ratios for the original faces (what a photograph has).
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
            blurred: Path | None, blurred_rows: dict[str, dict[str, Any]] | None) -> tuple[int, int, int, Crops]:
    """Substituted faces of 40 px or more; how many dlib's detector finds on the synthetic output,
    and how many at the same boxes on the blurred output (without one: every published photo, no
    blur figure, no crops); crops for the contact sheet."""
    total = found = found_blur = 0
    crops: Crops = []
    for name, row in rows.items():
        if row["status"] != "published":
            continue
        if blurred_rows is not None and blurred_rows.get(name, {}).get("status") != "published":
            continue
        faces = [f for f, m in zip(row["faces"] or [], row.get("face_methods") or [], strict=False)
                 if m == "synthetic" and min(f["x2"] - f["x1"], f["y2"] - f["y1"]) >= IDENTIFIABLE]
        if not faces:
            continue
        synthetic = np.ascontiguousarray(np.asarray(Image.open(output / "data" / name).convert("RGB")))
        if blurred is None:
            for f in faces:
                total += 1
                found += checker.readable(synthetic, [f["x1"], f["y1"], f["x2"], f["y2"]])
            continue
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


def _variant_policy(text: str) -> Any:
    """The default synthetic ``ReplacementPolicy`` with ``k=v`` settings (space separated)."""
    import dataclasses

    sys.path.insert(0, str(ROOT))
    from transforms.replacement import ReplacementPolicy

    policy = ReplacementPolicy(method="synthetic")
    fields = {f.name: type(getattr(policy, f.name)) for f in dataclasses.fields(policy)}
    values: dict[str, Any] = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--quick: no ReplacementPolicy field {key!r}")
        values[key] = fields[key](value)
    return dataclasses.replace(policy, **values)


def _ring_ratios(original: np.ndarray, image: np.ndarray, box: list[float]) -> tuple[float | None, float | None]:
    """Edge blur and noise of ``image`` inside the face box over those of ``original``'s ring (a
    quarter side around the box grown by the default margin): 1.0 is what the photo around has."""
    sys.path.insert(0, str(ROOT))
    from transforms.photo_match import edge_blur_sigma, luma, noise_sigma

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    grow = int(round(0.2 * float(np.hypot(x2 - x1, y2 - y1))))
    ring = max(4, round(0.25 * max(x2 - x1, y2 - y1)))
    height, width = original.shape[:2]
    gx1, gy1, gx2, gy2 = max(0, x1 - grow), max(0, y1 - grow), min(width, x2 + grow), min(height, y2 + grow)
    wx1, wy1, wx2, wy2 = max(0, gx1 - ring), max(0, gy1 - ring), min(width, gx2 + ring), min(height, gy2 + ring)
    known = np.ones((wy2 - wy1, wx2 - wx1), bool)
    known[gy1 - wy1: gy2 - wy1, gx1 - wx1: gx2 - wx1] = False
    ring_gray = luma(original[wy1:wy2, wx1:wx2])
    face_gray = luma(image[y1:y2, x1:x2])
    inside = np.ones(face_gray.shape, bool)
    out = []
    for estimate, floor in ((edge_blur_sigma, 0.3), (noise_sigma, 0.3)):
        r, f = estimate(ring_gray, known), estimate(face_gray, inside)
        out.append(None if r is None or f is None else max(f, floor) / max(r, floor))
    return out[0], out[1]


def quick_check(checker: IndependentIdentity, folder: Path, truth: dict[str, list[dict[str, Any]]],
                variants: list[str]) -> None:
    """Per variant: dlib's find rate, faces within 0.6 and the blur/noise ratios to the ring, on
    every readable ground-truth face of 40 px or more substituted alone with one seed."""
    import io

    sys.path.insert(0, str(ROOT))
    from transforms.records import Face
    from transforms.replacement import face_box, grown_box
    from transforms.synthesis import ParametricFaceGenerator, face_seed, synthesize_faces

    faces: list[tuple[str, list[float]]] = []
    originals: dict[str, np.ndarray] = {}
    for name, boxes in truth.items():
        original = np.ascontiguousarray(np.asarray(Image.open(folder / name).convert("RGB")))
        for b in boxes:
            x1, y1, x2, y2 = b["box"]
            if not b.get("invalid") and min(x2 - x1, y2 - y1) >= IDENTIFIABLE and checker.readable(original, b["box"]):
                faces.append((name, [float(v) for v in b["box"]]))
                originals[name] = original
    print(f"quick check: {len(faces)} readable ground-truth faces of 40 px or more")
    photo = [_ring_ratios(originals[n], originals[n], box) for n, box in faces]

    def medians(ratios: list[tuple[float | None, float | None]]) -> str:
        blur = [r[0] for r in ratios if r[0] is not None]
        noise = [r[1] for r in ratios if r[1] is not None]
        return (f"edge blur / ring median {np.median(blur):.2f} (n={len(blur)}), "
                f"noise / ring median {np.median(noise):.2f} (n={len(noise)})")

    print(f"  original faces: {medians(photo)}")
    generator = ParametricFaceGenerator()
    for text in variants:
        policy = _variant_policy(text)
        found = within = 0
        ratios = []
        for index, (name, box) in enumerate(faces):
            original = originals[name]
            height, width = original.shape[:2]
            face = Face(*box, score=1.0)
            result = synthesize_faces(Image.fromarray(original), [face],
                                      [grown_box(face, policy.box_margin, width, height)],
                                      [face_box(face, width, height)], generator,
                                      [face_seed(policy.synthetic_seed, name, index)], policy.synthetic_soften,
                                      policy.synthetic_blend, policy.synthetic_match)
            encoded = io.BytesIO()
            result.save(encoded, "JPEG", quality=95)
            output = np.ascontiguousarray(np.asarray(Image.open(encoded).convert("RGB")))
            found += checker.readable(output, box)
            reference, shape = checker.embed(original, box)
            same, _ = checker.embed(output, box, shape)
            own, _ = checker.embed(output, box)
            within += min(np.linalg.norm(reference - same), np.linalg.norm(reference - own)) < 0.6
            ratios.append(_ring_ratios(original, output, box))
        share = found / max(1, len(faces))
        print(f"  variant {text or '(defaults)'!r}: dlib finds {found}/{len(faces)} ({share:.1%}); "
              f"within 0.6 of the original: {within}; {medians(ratios)}")


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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the synthetic run only (repeatable)")
    parser.add_argument("--no-blur", action="store_true", help="skip the blur run")
    parser.add_argument("--quick", nargs="+", default=None, metavar="VARIANT",
                        help="the quick per-face check of policy variants instead of whole runs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synthetic-real-"))
    try:
        truth, _ = prepare_input(args.wider_dev, work / "in", args.limit)
        shutil.rmtree(work / "in" / "faceless")
        checker = IndependentIdentity()
        if args.quick is not None:
            quick_check(checker, work / "in", truth, args.quick)
            return
        outputs = {}
        for method in ("synthetic",) if args.no_blur else ("synthetic", "gaussian"):
            outputs[method] = work / f"out-{method}"
            overrides = [f"method={method}"] + (args.overrides if method == "synthetic" else [])
            seconds = run_ours(ROOT, work / "in", outputs[method], args.workers, overrides)
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
        blurred = outputs.get("gaussian")
        total, found, found_blur, crops = utility(checker, rows, outputs["synthetic"], blurred,
                                                  manifest_rows(blurred) if blurred else None)
        print(f"utility: dlib's frontal detector finds {found}/{total} substituted faces of 40 px or more "
              f"({found / max(1, total):.1%})" + (f"; the same faces blurred: {found_blur}/{total}" if blurred else ""))
        if args.sheet is not None and crops:
            contact_sheet(crops, args.sheet)
            print(f"contact sheet: {args.sheet} (WIDER photos: do not commit)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
