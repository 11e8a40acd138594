"""Identity evidence per replacement method on the demo images (CPU).

For gaussian, solid, synthetic and pixelate: mean and minimum identity distance between each
replaced face and its original (dlib embedding, as the pipeline measures it), the share of
replaced faces MTCNN still finds as a face, and the replacement cost in ms per face (the identity
check's own cost is printed separately). Usage: ``python benchmarks/identity.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.demo_data import build_demo_dataset
from transforms.decode import load_normalized
from transforms.detection import MtcnnDetector, MtcnnSettings
from transforms.identity import MATCH_THRESHOLD, IdentityEmbedder
from transforms.replacement import ReplacementPolicy, replace_faces
from transforms.synthesis import ParametricFaceGenerator, face_seed
from transforms.verification import SUBSTITUTE_IOU

METHODS = ("gaussian", "solid", "synthetic", "pixelate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats per image and method")
    args = parser.parse_args()
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
    print(f"demo images with faces: {len(images)}, faces: {total_faces} (MTCNN, score >= 0.7)")
    print(f"{'method':10} {'faces':>5} {'mean dist':>9} {'min dist':>8} {'matching':>8} "
          f"{'redetected':>10} {'ms/face':>8} {'id ms/face':>10}")
    for method in METHODS:
        policy = ReplacementPolicy(method=method)
        distances: list[float] = []
        redetected = 0
        replace_seconds = 0.0
        identity_seconds = 0.0
        for name, image, faces in images:
            seeds = [face_seed(0, name, i) for i in range(len(faces))]
            started = time.perf_counter()
            for _ in range(args.repeat):
                out = replace_faces(image, faces, policy, generator, seeds)
            replace_seconds += (time.perf_counter() - started) / args.repeat
            buffer = io.BytesIO()
            out.save(buffer, "JPEG", quality=95)
            decoded = np.asarray(Image.open(buffer).convert("RGB"))
            started = time.perf_counter()
            distances.extend(embedder.distances(np.asarray(image), decoded, faces))
            identity_seconds += time.perf_counter() - started
            found = detector.detect([Image.fromarray(decoded)])[0]
            redetected += sum(1 for face in faces if any(face.iou(f) >= SUBSTITUTE_IOU for f in found))
        matching = sum(1 for d in distances if d <= MATCH_THRESHOLD)
        print(f"{method:10} {total_faces:5d} {np.mean(distances):9.3f} {min(distances):8.3f} {matching:8d} "
              f"{redetected / total_faces:10.2f} {1000 * replace_seconds / total_faces:8.1f} "
              f"{1000 * identity_seconds / total_faces:10.1f}")
    print(f"identity match threshold: distance <= {MATCH_THRESHOLD}; synthetic seeds: first attempt only")


if __name__ == "__main__":
    main()
