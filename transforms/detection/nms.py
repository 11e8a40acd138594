"""Non-maximum suppression with torchvision's C++ kernel, without importing torchvision's Python package.

``import torchvision`` loads its models, datasets, transforms and io modules: about 2.5 s of every
worker process's start-up, for one function. The detectors need only its NMS kernel, so they load
torchvision's operator library into torch (``torch.ops.torchvision``, 2 ms) and call it as
``torchvision.ops.nms`` does; ``batched_nms`` follows ``torchvision.ops.batched_nms`` step by step, so
both give the very indices torchvision gives (tested against it). Where the library cannot be loaded
this way (another torchvision build), ``torchvision.ops`` itself is used.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

# torchvision's operator libraries, newest name first (0.29 ships ``_C_stable``, earlier ones ``_C``).
_LIBRARIES = ("_C_stable", "_C")


@functools.cache
def _nms_kernel() -> Any:
    """``torch.ops.torchvision.nms``, loaded from torchvision's library; else ``torchvision.ops.nms``."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face detectors need torchvision (pip install torchvision)")
    folder = Path(list(spec.submodule_search_locations)[0])
    for name in _LIBRARIES:
        for library in sorted(folder.glob(f"{name}.*")):
            if library.suffix not in (".so", ".pyd", ".dll", ".dylib"):
                continue
            try:
                torch.ops.load_library(str(library))
                return torch.ops.torchvision.nms
            except (OSError, RuntimeError, AttributeError):
                continue
    from torchvision.ops import nms

    return nms


def nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """Indices of the boxes [N, 4] (x1, y1, x2, y2) kept by greedy NMS at IoU ``iou_threshold``,
    highest score first (``torchvision.ops.nms``)."""
    return _nms_kernel()(boxes, scores, iou_threshold)


def batched_nms(boxes: Any, scores: Any, groups: Any, iou_threshold: float) -> Any:
    """NMS within each group (``groups`` [N]: a group per box), never across groups; highest score
    first (``torchvision.ops.batched_nms``: group by group for many boxes, else one NMS over boxes
    offset per group so that groups cannot overlap)."""
    import torch

    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for group in torch.unique(groups):
            members = torch.where(groups == group)[0]
            keep[members[nms(boxes[members], scores[members], iou_threshold)]] = True
        kept = torch.where(keep)[0]
        return kept[scores[kept].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    offsets = groups.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)
