"""NMS from torchvision's kernel without its Python package: the very indices torchvision gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.ops

from transforms.detection.nms import batched_nms, nms

ROOT = Path(__file__).resolve().parents[1]


def random_boxes(count: int, seed: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=generator) * 600
    size = torch.rand(count, 2, generator=generator) * 80 + 4
    scores = torch.rand(count, generator=generator)
    if ties:
        scores = (scores * 8).round() / 8  # many equal scores
    groups = torch.randint(0, 5, (count,), generator=generator)
    return torch.cat([corner, corner + size], dim=1), scores, groups


@pytest.mark.parametrize("count", [0, 1, 40, 900, 3000])  # 3000 boxes: torchvision's group-by-group path
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_the_same_indices_as_torchvision(count: int, threshold: float) -> None:
    boxes, scores, groups = random_boxes(count, seed=count)
    assert torch.equal(nms(boxes, scores, threshold), torchvision.ops.nms(boxes, scores, threshold))
    assert torch.equal(batched_nms(boxes, scores, groups, threshold),
                       torchvision.ops.batched_nms(boxes, scores, groups, threshold))


def test_groups_never_suppress_each_other() -> None:
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    boxes = box.repeat(4, 1)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 1, 2]), 0.5).tolist() == [0, 2, 3]


def test_detectors_run_without_importing_torchvision_facenet_or_onnx(tmp_path: Path) -> None:
    """A worker running the default detectors loads neither torchvision nor facenet-pytorch, and,
    once CenterFace's rewrite is in the machine's cache, not onnx either (seconds of its start-up)."""
    script = (
        "import sys\n"
        "from PIL import Image\n"
        "from transforms.detection import CenterFaceDetector, CenterFaceSettings\n"
        "from transforms.detection.fast_mtcnn import FastMtcnnDetector, FastMtcnnSettings\n"
        "image = Image.new('RGB', (320, 240), (120, 100, 90))\n"
        "FastMtcnnDetector(FastMtcnnSettings(device='cpu')).detect([image])\n"
        "CenterFaceDetector(CenterFaceSettings(device='cpu')).detect([image])\n"
        "loaded = sorted(m for m in ('torchvision', 'facenet_pytorch', 'onnx') if m in sys.modules)\n"
        "print('loaded:', loaded)\n"
    )
    env = os.environ | {"DATASET_ANONYMIZER_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert "loaded: ['onnx']" in runs[0], runs[0]  # the first process rewrites CenterFace's model
    assert "loaded: []" in runs[1], runs[1]
