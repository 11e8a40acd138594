"""Identity evidence per replacement method on the demo images (CPU).

For gaussian, solid, synthetic and pixelate: mean and minimum identity distance between each
replaced face and its original (dlib embedding, as the pipeline measures it), the share of
replaced faces MTCNN still finds as a face, and the replacement cost in ms per face. ``synthetic``
is the first seed only; ``synthetic*`` is what the pipeline publishes: each face's farthest of up
to ``synthetic_attempts`` seeds (``choose_synthetic_attempts``), whose search cost is printed as
``select ms``. Each original face is measured once (``reference ms/face``); ``id ms/face`` is then
the check of one replaced face against it. Usage: ``python benchmarks/identity.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sampledata.demo import build_demo_dataset
from transforms.decode import load_normalized
from transforms.detection import MtcnnDetector, MtcnnSettings
from transforms.identity import MATCH_THRESHOLD, MIN_IDENTIFIABLE_FACE, IdentityEmbedder
from transforms.replacement import ReplacementPolicy, attempt_seed, choose_synthetic_attempts, replace_faces
from transforms.synthesis import ParametricFaceGenerator
from transforms.verification import SUBSTITUTE_IOU

METHODS = ("gaussian", "solid", "synthetic", "synthetic*", "pixelate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats per image and method")
    args = parser.parse_args()
    torch.set_num_threads(1)
    detector = MtcnnDetector(MtcnnSettings(torch_threads=1))
    embedder = IdentityEmbedder()
    generator = ParametricFaceGenerator()
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_demo_dataset(Path(tmp) / "images")
        images = []
        for path in sorted(paths):
            image, _ = load_normalized(path.read_bytes(), 10**8)
            faces = [f for f in detector.detect([image])[0] if f.score >= 0.7]
            if faces:
                images.append((path.name, image.convert("RGB"), tuple(faces)))
    total_faces = sum(len(f) for _, _, f in images)
    started = time.perf_counter()
    references = {name: embedder.references(np.asarray(image), faces) for name, image, faces in images}
    reference_ms = 1000 * (time.perf_counter() - started) / total_faces
    sides = [face.short_side for _, _, faces in images for face in faces]
    print(f"demo images with faces: {len(images)}, faces: {total_faces} (MTCNN, score >= 0.7); "
          f"generator {generator.name}; reference (original alignment + embedding) {reference_ms:.1f} ms/face")
    print(f"{'method':10} {'faces':>5} {'mean dist':>9} {'min dist':>8} {'min >=40':>8} {'matching':>8} "
          f"{'redetected':>10} {'ms/face':>8} {'select ms':>9} {'id ms/face':>10}")
    for method in METHODS:
        policy = ReplacementPolicy(method=method.rstrip("*"))
        distances: list[float] = []
        redetected = 0
        replace_seconds = select_seconds = identity_seconds = 0.0
        for name, image, faces in images:
            attempts = [0] * len(faces)
            if method.endswith("*"):
                started = time.perf_counter()
                attempts = choose_synthetic_attempts(np.asarray(image), faces, dict(enumerate(references[name])),
                                                     policy, generator, embedder, name)
                select_seconds += time.perf_counter() - started
            seeds = [attempt_seed(policy, name, i, t) for i, t in enumerate(attempts)]
            started = time.perf_counter()
            for _ in range(args.repeat):
                out = replace_faces(image, faces, policy, generator, seeds)
            replace_seconds += (time.perf_counter() - started) / args.repeat
            buffer = io.BytesIO()
            out.save(buffer, "JPEG", quality=95)
            decoded = np.asarray(Image.open(buffer).convert("RGB"))
            started = time.perf_counter()
            distances.extend(embedder.distances_to(references[name], decoded))
            identity_seconds += time.perf_counter() - started
            found = detector.detect([Image.fromarray(decoded)])[0]
            redetected += sum(1 for face in faces if any(face.iou(f) >= SUBSTITUTE_IOU for f in found))
        matching = sum(1 for d in distances if d <= MATCH_THRESHOLD)
        gated = min(d for d, side in zip(distances, sides, strict=True) if side >= MIN_IDENTIFIABLE_FACE)
        print(f"{method:10} {total_faces:5d} {np.mean(distances):9.3f} {min(distances):8.3f} {gated:8.3f} "
              f"{matching:8d} {redetected / total_faces:10.2f} {1000 * replace_seconds / total_faces:8.1f} "
              f"{1000 * select_seconds / total_faces:9.1f} {1000 * identity_seconds / total_faces:10.1f}")
    default = ReplacementPolicy(method="synthetic")
    print(f"identity match threshold: distance <= {MATCH_THRESHOLD}; min >=40: faces of {MIN_IDENTIFIABLE_FACE} px "
          f"or more; synthetic: first seed; synthetic*: farthest of up to {default.synthetic_attempts} seeds "
          f"(stop above {default.synthetic_target_distance})")


if __name__ == "__main__":
    main()
