"""Verification in windows around what changed against verification of the whole output, on real photos.

    python benchmarks/verify_scope.py [--wider-dev ../shared/data/wider-dev] [--limit 100]

Runs the job's own stages in this process, on one thread, with the default policy
(``conf/base.yaml``): decode, the detect stage, the replace stage (JPEGs with faces spliced,
``transforms/jpeg_splice.py``), then on every output both verify scopes with the verify detector
(``verify_scope: full`` and ``regions``, ``transforms/verify_scope.py``). It prints, over the WIDER
FACE val photos of ``wider-dev``:

- how the outputs were written (``spliced`` or ``reencoded``);

- the seconds each scope's re-detection took, and how many outputs ``regions`` searched in windows
  (the others whole) with the share of their pixels the windows cover;
- faces the full search finds at or above ``verify_score_threshold`` that no replaced face explains
  (what verification acts on) under each scope, and those the full search finds that ``regions``
  does not: the faces the cheaper check would let through (must be 0);
- for every face the full search finds on an output outside the windows (any score), the score of
  the same face on the source (detect stage, IoU >= 0.5; 0 when the detect stage did not report
  it), and the largest rise: on the source's very pixels, none (``transforms/verify_scope.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from pipelines.anonymize import detector_stack_for  # noqa: E402
from pipelines.config import build_options  # noqa: E402
from pipelines.settings import input_shards, replacement_policy_for, storage_for  # noqa: E402
from transforms.decode import DecodeAndNormalise  # noqa: E402
from transforms.detection import FaceDetectionHandler  # noqa: E402
from transforms.records import Face, Record  # noqa: E402
from transforms.replace_stage import ReplaceFaces  # noqa: E402
from transforms.shards import read_shard  # noqa: E402
from transforms.verification import SUBSTITUTE_IOU  # noqa: E402
from transforms.verify_scope import verify_windows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WIDER = ROOT.parent / "shared" / "data" / "wider-dev"


def unexplained(record: Record, threshold: float) -> list[Face]:
    """Faces found on the output at or above ``threshold`` that overlap no replaced face."""
    return [f for f in record.output_faces if f.counts_at(threshold)
            and not any(f.iou(r) >= SUBSTITUTE_IOU for r in record.faces)]


def inside(face: Face, windows: tuple[tuple[int, int, int, int], ...]) -> bool:
    return any(face.x1 >= x1 and face.y1 >= y1 and face.x2 <= x2 and face.y2 <= y2 for x1, y1, x2, y2 in windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wider-dev", type=Path, default=DEFAULT_WIDER)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    photos = sorted((args.wider_dev / "images").glob("*/*.jpg"))[: args.limit]
    if not photos:
        raise SystemExit(f"no photos under {args.wider_dev}/images")
    folder = Path(tempfile.mkdtemp(prefix="verify-scope-"))
    try:
        for path in photos:  # copied to a temporary folder only (licence)
            shutil.copy(path, folder / path.name)
        options, _ = build_options([str(ROOT / "conf" / "base.yaml")],
                                   [f"input={folder}", f"output={folder}-out", "purpose=benchmark",
                                    "legal_basis=legitimate_interests", "torch_threads=1"])
        stack = detector_stack_for(options)
        detect = FaceDetectionHandler(stack.detect, 1, options.max_image_pixels)
        handlers = {scope: FaceDetectionHandler(stack.verify, 1, options.max_image_pixels, mode="verify",
                                                verify_threshold=options.verify_score_threshold,
                                                reuse_same_pixels=True, scope=scope) for scope in ("full", "regions")}
        detect_model, verify_model = stack.detect(), stack.verify()
        replace = ReplaceFaces(replacement_policy_for(options), options.max_image_pixels, options.jpeg_quality,
                               identity_check=False)
        replace.setup()
        decode = DecodeAndNormalise(options.max_image_pixels, options.min_image_side)
        threshold = options.verify_score_threshold
        seconds = {"full": 0.0, "regions": 0.0}
        acted = {"full": 0, "regions": 0}
        missed, windowed, covered, outside_scores, rises = 0, 0, [], [], []
        encodings: Counter[str] = Counter()
        storage = storage_for(options)
        records = [r for spec in input_shards(options, storage) for r in read_shard(spec, storage)]
        for source in records:
            decoded = list(decode.process(source))[0]
            detected = list(detect.run_inference([decoded], detect_model))[0]
            output = list(replace.process(detected))[0]
            if output.is_quarantined:
                print(f"{source.relative_path}: quarantined {output.reason}", flush=True)
                continue
            encodings[output.output_encoding] += 1
            verified: dict[str, Record] = {}
            for scope, handler in handlers.items():
                started = time.perf_counter()
                verified[scope] = list(handler.run_inference([output], verify_model))[0]
                seconds[scope] += time.perf_counter() - started
                acted[scope] += len(unexplained(verified[scope], threshold))
            full, regions = verified["full"], verified["regions"]
            lost = [f for f in unexplained(full, threshold)
                    if not any(f.iou(g) >= 0.5 for g in unexplained(regions, threshold))]
            missed += len(lost)
            for face in lost:
                print(f"{source.relative_path}: full search finds {face} that regions does not", flush=True)
            windows = verify_windows(output.changed_regions, output.width, output.height) \
                if output.changed_regions else None
            if regions.verify_detection == "regions" and windows:
                windowed += 1
                covered.append(sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in windows)
                               / (output.width * output.height))
                for face in full.output_faces:
                    if inside(face, windows):
                        continue
                    before = max((f.score for f in detected.faces if f.iou(face) >= 0.5), default=0.0)
                    outside_scores.append(face.score)
                    rises.append(face.score - before)
                    if face.score - before > 0.3:
                        nearest = max(detected.faces, key=lambda f: f.iou(face), default=None)
                        print(f"{source.relative_path}: outside the windows {face} scores {face.score:.3f}, "
                              f"on the source {before:.3f} (nearest source face {nearest})", flush=True)
        outputs = len(records)
        print(f"{outputs} WIDER photos; verify detector {stack.verify.info()['name']}; outputs: "
              + ", ".join(f"{n} {kind}" for kind, n in encodings.most_common()))
        for scope in ("full", "regions"):
            print(f"verify_scope {scope}: {seconds[scope]:.1f} s ({1000 * seconds[scope] / outputs:.0f} ms/photo); "
                  f"faces at or above {threshold} no replaced face explains: {acted[scope]}")
        mean_cover = sum(covered) / len(covered) if covered else 0.0
        print(f"regions: {windowed} outputs searched in windows (mean {mean_cover:.1%} of their pixels), "
              f"{outputs - windowed} whole")
        print(f"faces the full search acts on that regions misses: {missed}")
        if outside_scores:
            print(f"faces found outside the windows by the full search: {len(outside_scores)}, highest score "
                  f"{max(outside_scores):.3f}; largest rise over the source's score {max(rises):+.3f}; "
                  f"at or above {threshold}: {sum(s >= threshold for s in outside_scores)}")
        else:
            print("faces found outside the windows by the full search: 0")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(f"{folder}-out", ignore_errors=True)


if __name__ == "__main__":
    main()
