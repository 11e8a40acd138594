"""A vectorized, batched MTCNN with facenet-pytorch's shipped P/R/O-Net weights.

Same cascade and weights as facenet-pytorch's ``detect_face`` (so the same detections), but:

- one integer integral image of the batch (OpenCV's on CPU, a cumulative sum on CUDA) serves every
  area resize: the pyramid's levels and the R-Net and O-Net crops are read from it with gathers,
  bit for bit what facenet-pytorch's ``interpolate(mode="area")`` gives, at a fraction of its cost
  (``roi_align`` was tried for the crops: its bilinear samples are not an area resize, boxes moved);
- each pyramid scale of a whole batch (mixed image sizes included) goes through P-Net in one call;
- every NMS is a batched tensor op (torchvision's ``batched_nms``, ``transforms/detection/nms.py``;
  the final "Min" NMS is a vectorized greedy suppression), so nothing leaves the device until the
  final boxes;
- the nets are built from facenet-pytorch's state dicts (``load_net``), without importing
  facenet-pytorch or torchvision (seconds of each worker's start-up).

The device is chosen automatically (CUDA when present); tensors stay on it through the cascade.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from transforms.detection.mtcnn import facenet_data_dir, mtcnn_info
from transforms.detection.nms import batched_nms
from transforms.records import Face

FAST_MTCNN = "fast_mtcnn"
CPU_CHUNK = 64  # R-Net / O-Net crops per call on CPU


@dataclass(frozen=True)
class FastMtcnnSettings:
    """Settings of the fast MTCNN; validated on construction.

    ``min_face_size`` below 12 upsamples the pyramid's first level (12 / min_face_size > 1), which
    is how faces of 8-20 px are searched for; ``scale_factor`` is the pyramid step (denser pyramid:
    closer to 1).
    """

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    scale_factor: float = 0.709
    device: str = "auto"
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.min_face_size < 8:
            raise ValueError(f"min_face_size must be >= 8, got {self.min_face_size}")
        if len(self.thresholds) != 3 or any(not 0.0 < t < 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be three numbers in (0, 1), got {self.thresholds}")
        if not 0.5 <= self.scale_factor <= 0.95:
            raise ValueError(f"scale_factor must be in [0.5, 0.95], got {self.scale_factor}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """The scales facenet-pytorch's MTCNN uses for an image of this size."""
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scales = []
    scale = m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def integral_image(arrays: Sequence[np.ndarray], device: Any, opencv: bool | None = None) -> Any:
    """The integral image [B, H+1, W+1, 3] of a batch of RGB uint8 arrays of any sizes.

    ``integral[b, y, x, c]`` is the sum of channel ``c`` of image ``b`` over rows ``< y`` and
    columns ``< x``. Images smaller than the batch are zero-padded at the bottom and right, so each
    image's own integral is the top-left corner of its plane. Exact: int32 up to 8 million pixels
    (a sum of 8-bit pixels), int64 above. OpenCV computes it on CPU (``opencv=None``), a cumulative
    sum on the device elsewhere (both tested to agree).
    """
    import torch

    height = max(a.shape[0] for a in arrays)
    width = max(a.shape[1] for a in arrays)
    dtype = torch.int64 if height * width > 8_000_000 else torch.int32
    if opencv is None:
        opencv = torch.device(device).type == "cpu"
    if opencv and dtype == torch.int32:
        import cv2

        planes = [torch.from_numpy(cv2.integral(np.ascontiguousarray(a))) for a in arrays]
        if len(planes) == 1:
            return planes[0][None]
        integral = torch.zeros((len(planes), height + 1, width + 1, 3), dtype=dtype)
        for i, plane in enumerate(planes):
            h, w = plane.shape[:2]
            integral[i, :h, :w] = plane
            # Past an image's right and bottom edges its sums stay constant (zero padding).
            integral[i, :h, w:] = plane[:, -1:]
            integral[i, h:] = integral[i, h - 1: h]
        return integral
    batch = torch.zeros((len(arrays), height, width, 3), dtype=dtype, device=device)
    for i, array in enumerate(arrays):
        batch[i, : array.shape[0], : array.shape[1]] = torch.from_numpy(np.array(array)).to(device)  # writable copy
    integral = torch.nn.functional.pad(batch, (0, 0, 1, 0, 1, 0))
    return integral.cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)


def area_resize(integral: Any, height: int, width: int, size: tuple[int, int],
                numpy_gather: bool | None = None) -> Any:
    """``interpolate(images, size, mode="area")`` of images ``height`` x ``width``, from their
    integral image [B, C, >= height+1, >= width+1]: the same adaptive-average-pool bins, the same
    float32 values (bin sums are exact integers, divided by the bin's height, then its width).
    The gathers go through NumPy on CPU (``numpy_gather=None``), several times faster there than
    torch's, and through torch on the device elsewhere (both tested to agree).
    """
    import torch

    device = integral.device
    r0, r1, row_size = _bins(height, size[0], str(device))
    c0, c1, col_size = _bins(width, size[1], str(device))
    if numpy_gather if numpy_gather is not None else device.type == "cpu":
        source = integral.numpy()
        rows = source.take(r1.numpy(), axis=2) - source.take(r0.numpy(), axis=2)
        sums = torch.from_numpy(rows.take(c1.numpy(), axis=3) - rows.take(c0.numpy(), axis=3))
    else:
        rows = integral.index_select(2, r1) - integral.index_select(2, r0)
        sums = rows.index_select(3, c1) - rows.index_select(3, c0)
    return sums.to(torch.float32) / row_size[:, None] / col_size


def take_rows(table: Any, where: Any, numpy_gather: bool | None = None) -> Any:
    """Rows of a 2-D ``table`` at the indices ``where`` (any shape): shape ``[*where.shape, columns]``.
    Through NumPy on CPU (``numpy_gather=None``), where its gather is several times faster than
    torch's; through torch on the device elsewhere."""
    import torch

    if numpy_gather if numpy_gather is not None else table.device.type == "cpu":
        return torch.from_numpy(table.numpy().take(where.numpy(), axis=0))
    return table.index_select(0, where.reshape(-1)).reshape(*where.shape, table.shape[1])


@functools.lru_cache(maxsize=256)
def _bins(n_in: int, n_out: int, device: str) -> tuple[Any, Any, Any]:
    """Adaptive pooling's bins: first and past-the-end input index of each output index, and the
    bin's size as float32 (cached: a dataset's images mostly share a few sizes)."""
    import torch

    i = torch.arange(n_out, device=device)
    first, end = (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out
    return first, end, (end - first).to(torch.float32)


def load_net(name: str, device: Any) -> Any:
    """facenet-pytorch's shipped P-, R- or O-Net (``name``: pnet, rnet, onet) on ``device``, in eval mode.

    Each layer is built from its weight's shape in the state dict (4-D: a convolution, 2-D: a linear
    layer, ``prelu*``: a PReLU), named as facenet-pytorch names it, and the whole state dict is then
    loaded strictly, so every tensor has its layer. facenet-pytorch itself is never imported (it
    imports torchvision: seconds of every worker's start-up); the forward passes are this module's.
    """
    import torch

    state = torch.load(facenet_data_dir() / f"{name}.pt", map_location="cpu", weights_only=True)
    net = torch.nn.Module()
    for key, tensor in state.items():
        if not key.endswith(".weight"):
            continue
        layer, shape = key.removesuffix(".weight"), tuple(tensor.shape)
        if layer.startswith("prelu"):
            net.add_module(layer, torch.nn.PReLU(shape[0]))
        elif len(shape) == 4:
            net.add_module(layer, torch.nn.Conv2d(shape[1], shape[0], kernel_size=shape[2:]))
        elif len(shape) == 2:
            net.add_module(layer, torch.nn.Linear(shape[1], shape[0]))
        else:
            raise RuntimeError(f"{name}.pt: no layer for {key} of shape {shape}")
    net.load_state_dict(state)  # strict: a missing or unexpected tensor raises
    return net.to(device).eval()


def _pnet_out_size(size: int) -> int:
    # conv3x3 -> maxpool2 (ceil) -> conv3x3 -> conv3x3
    return math.ceil((size - 2) / 2) - 4


def _max_pool(x: Any, kernel: int) -> Any:
    """``MaxPool2d(kernel, 2, ceil_mode=True)`` (kernel 2 or 3) as strided maxima: same values,
    several times faster on CPU than the pooling kernel."""
    import torch
    from torch.nn.functional import pad

    h, w = x.shape[-2:]
    out_h = math.ceil((h - kernel) / 2) + 1
    out_w = math.ceil((w - kernel) / 2) + 1
    if (out_h - 1) * 2 >= h:
        out_h -= 1
    if (out_w - 1) * 2 >= w:
        out_w -= 1
    need_h = 2 * (out_h - 1) + kernel
    need_w = 2 * (out_w - 1) + kernel
    if need_h > h or need_w > w:
        x = pad(x, (0, max(0, need_w - w), 0, max(0, need_h - h)), value=float("-inf"))
    rows = x[..., 0: 2 * out_h - 1: 2, :]
    for k in range(1, kernel):
        rows = torch.maximum(rows, x[..., k: k + 2 * out_h - 1: 2, :])
    out = rows[..., 0: 2 * out_w - 1: 2]
    for k in range(1, kernel):
        out = torch.maximum(out, rows[..., k: k + 2 * out_w - 1: 2])
    return out


def _pnet_forward(net: Any, x: Any) -> tuple[Any, Any]:
    import torch

    x = _max_pool(net.prelu1(net.conv1(x)), 2)
    x = net.prelu3(net.conv3(net.prelu2(net.conv2(x))))
    return net.conv4_2(x), torch.softmax(net.conv4_1(x), dim=1)


# R-Net and O-Net run on many small crops: there oneDNN's channels-last convolutions and pooling
# are faster (measured on CPU: R-Net 25%, O-Net up to 50% less time); P-Net's few large maps are
# faster in the default layout.
def _rnet_forward(net: Any, x: Any) -> tuple[Any, Any]:
    import torch
    from torch.nn.functional import max_pool2d

    x = x.contiguous(memory_format=torch.channels_last)
    x = max_pool2d(net.prelu1(net.conv1(x)), 3, 2, ceil_mode=True)
    x = max_pool2d(net.prelu2(net.conv2(x)), 3, 2, ceil_mode=True)
    x = net.prelu3(net.conv3(x)).permute(0, 3, 2, 1).contiguous()
    x = net.prelu4(net.dense4(x.view(x.shape[0], -1)))
    return net.dense5_2(x), torch.softmax(net.dense5_1(x), dim=1)


def _onet_forward(net: Any, x: Any) -> tuple[Any, Any, Any]:
    import torch
    from torch.nn.functional import max_pool2d

    x = x.contiguous(memory_format=torch.channels_last)
    x = max_pool2d(net.prelu1(net.conv1(x)), 3, 2, ceil_mode=True)
    x = max_pool2d(net.prelu2(net.conv2(x)), 3, 2, ceil_mode=True)
    x = max_pool2d(net.prelu3(net.conv3(x)), 2, 2, ceil_mode=True)
    x = net.prelu4(net.conv4(x)).permute(0, 3, 2, 1).contiguous()
    x = net.prelu5(net.dense5(x.view(x.shape[0], -1)))
    return net.dense6_2(x), net.dense6_3(x), torch.softmax(net.dense6_1(x), dim=1)


def min_nms(boxes: Any, scores: Any, groups: Any, threshold: float) -> Any:
    """Greedy NMS with the intersection-over-minimum-area overlap, per group, fully vectorized.

    Same result as facenet-pytorch's ``batched_nms_numpy(..., 'Min')``: boxes sorted by score,
    a box is dropped when a kept, higher-scored box of its group overlaps it by more than
    ``threshold``. Returns the kept indices, highest score first.
    """
    import torch

    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order]
    g = groups[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    xx1 = torch.maximum(b[:, None, 0], b[None, :, 0])
    yy1 = torch.maximum(b[:, None, 1], b[None, :, 1])
    xx2 = torch.minimum(b[:, None, 2], b[None, :, 2])
    yy2 = torch.minimum(b[:, None, 3], b[None, :, 3])
    inter = (xx2 - xx1 + 1).clamp(min=0) * (yy2 - yy1 + 1).clamp(min=0)
    overlap = inter / torch.minimum(area[:, None], area[None, :])
    n = b.shape[0]
    earlier = torch.ones(n, n, dtype=torch.bool, device=b.device).triu(diagonal=1)
    suppresses = (overlap > threshold) & earlier & (g[:, None] == g[None, :])
    keep = torch.ones(n, dtype=torch.bool, device=b.device)
    # Fixed point of "kept = not suppressed by a kept earlier box": after k rounds the first k
    # boxes are final, so it ends in at most n rounds (in practice two or three).
    for _ in range(n):
        new_keep = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


class FastMtcnnDetector:
    """MTCNN cascade on batches of images of any sizes, vectorized and on one device."""

    name = FAST_MTCNN

    def __init__(self, settings: FastMtcnnSettings) -> None:
        import torch

        torch.set_num_threads(settings.torch_threads)
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.settings = settings
        self._pnet = load_net("pnet", self.device)
        self._rnet = load_net("rnet", self.device)
        self._onet = load_net("onet", self.device)

    @classmethod
    def info(cls) -> dict[str, str]:
        return mtcnn_info() | {"name": FAST_MTCNN}

    # -- stages ------------------------------------------------------------------------------

    def _integral(self, images: Sequence[Image.Image]) -> tuple[Any, Any]:
        """The batch's integral image (see ``integral_image``) on the device, and sizes [B, 2]."""
        import torch

        arrays = [np.asarray(im if im.mode == "RGB" else im.convert("RGB")) for im in images]
        sizes = torch.tensor([a.shape[:2] for a in arrays], device=self.device, dtype=torch.float32)
        return integral_image(arrays, self.device), sizes

    def _pnet_stage(self, integral: Any, images: Sequence[Image.Image]) -> tuple[Any, Any]:
        """Candidate boxes [N, 9] (x1, y1, x2, y2, score, 4 regressions) and their image indices."""
        import torch
        from torch.nn.functional import pad

        s = self.settings
        sizes = [(im.height, im.width) for im in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(sizes):
            groups.setdefault(size, []).append(i)
        # Images of one size share their pyramid and resize together, from their integral images
        # (channels first: the pyramid's gathers are faster on whole rows).
        planes = integral.permute(0, 3, 1, 2)
        if planes.device.type == "cpu":
            planes = planes.contiguous()
        sources = []
        for (h, w), members in groups.items():
            whole = len(members) == len(images)
            source = planes if whole else planes[members]
            sources.append(((h, w), members, source, pyramid_scales(h, w, s.min_face_size, s.scale_factor)))
        n_scales = max(len(item[3]) for item in sources)
        all_boxes, all_inds, all_groups = [], [], []
        for level in range(n_scales):
            pieces, members, scales, out_sizes = [], [], [], []
            for (h, w), group, source, group_scales in sources:
                if len(group_scales) <= level:
                    continue
                scale = group_scales[level]
                target = (int(h * scale + 1), int(w * scale + 1))
                pieces.append(area_resize(source, h, w, target))
                members += group
                scales += [scale] * len(group)
                out_sizes += [(_pnet_out_size(target[0]), _pnet_out_size(target[1]))] * len(group)
            if len(pieces) == 1:
                level_batch = pieces[0]
            else:
                th = max(p.shape[2] for p in pieces)
                tw = max(p.shape[3] for p in pieces)
                level_batch = torch.cat([pad(p, (0, tw - p.shape[3], 0, th - p.shape[2])) for p in pieces])
            level_batch = level_batch.sub_(127.5).mul_(0.0078125)
            reg, probs = _pnet_forward(self._pnet, level_batch)
            prob = probs[:, 1]
            mask = prob >= s.thresholds[0]
            if len(pieces) > 1:
                # Positions whose 12x12 window lies beyond an image's own resized area do not
                # exist in a per-image run: mask them out.
                limits = torch.tensor(out_sizes, device=self.device)
                rows_ok = torch.arange(prob.shape[1], device=self.device)[None, :] < limits[:, :1]
                cols_ok = torch.arange(prob.shape[2], device=self.device)[None, :] < limits[:, 1:]
                mask &= rows_ok[:, :, None] & cols_ok[:, None, :]
            idx = mask.nonzero()
            if idx.shape[0] == 0:
                continue
            image_inds = torch.tensor(members, device=self.device)[idx[:, 0]]
            scale_t = torch.tensor(scales, device=self.device, dtype=torch.float32)[idx[:, 0]]
            score = prob[mask]
            regs = reg.permute(0, 2, 3, 1)[mask]
            xy = idx[:, 1:].to(torch.float32).flip(1)
            q1 = ((2 * xy + 1) / scale_t[:, None]).floor()
            q2 = ((2 * xy + 12) / scale_t[:, None]).floor()
            all_boxes.append(torch.cat([q1, q2, score[:, None], regs], dim=1))
            all_inds.append(image_inds)
            all_groups.append(image_inds * n_scales + level)
        if not all_boxes:
            empty = torch.zeros((0, 9), device=self.device)
            return empty, torch.zeros((0,), dtype=torch.long, device=self.device)
        boxes = torch.cat(all_boxes)
        inds = torch.cat(all_inds)
        scale_groups = torch.cat(all_groups)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], scale_groups, 0.5)  # within each scale + image
        boxes, inds = boxes[pick], inds[pick]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)  # within each image
        boxes, inds = boxes[pick], inds[pick]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        refined = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                               boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                               boxes[:, 4]], dim=1)
        return _rerec(refined), inds

    def _crops(self, integral: Any, boxes: Any, inds: Any, sizes: Any, size: int) -> tuple[Any, Any]:
        """All candidate crops area-resized to ``size`` at once, exactly as facenet-pytorch cuts them.

        facenet-pytorch slices each box (clipped to its image) and resizes it with
        ``interpolate(mode="area")``, an adaptive average pool; here every output pixel's bin sum
        is read from the batch's integral image, for all boxes in one gather.
        """
        import torch

        t = boxes[:, :4].trunc()
        x0 = t[:, 0].clamp(min=1) - 1
        y0 = t[:, 1].clamp(min=1) - 1
        x1 = torch.minimum(t[:, 2], sizes[inds, 1])
        y1 = torch.minimum(t[:, 3], sizes[inds, 0])
        valid = (y1 > y0) & (x1 > x0)
        x0, y0, x1, y1, b = (v[valid].long() for v in (x0, y0, x1, y1, inds))
        i = torch.arange(size, device=self.device)
        hc, wc = (y1 - y0)[:, None], (x1 - x0)[:, None]
        # Bin edges [2, N, size]: first / past-the-end row (column) of each output pixel's bin.
        r = torch.stack([y0[:, None] + (i[None, :] * hc) // size,
                         y0[:, None] + ((i[None, :] + 1) * hc + size - 1) // size])
        c = torch.stack([x0[:, None] + (i[None, :] * wc) // size,
                         x0[:, None] + ((i[None, :] + 1) * wc + size - 1) // size])
        _, rows, cols, channels = integral.shape
        # All four corners of every bin of every box in one gather of whole pixels, channels last
        # (the layout R-Net and O-Net run in): [2, 2, N, size, size, C].
        where = (r + (b * rows)[None, :, None])[:, None, :, :, None] * cols + c[None, :, :, None, :]
        corner = take_rows(integral.reshape(-1, channels), where)
        sums = corner[1, 1] - corner[0, 1] - corner[1, 0] + corner[0, 0]
        area = ((r[1] - r[0])[:, :, None] * (c[1] - c[0])[:, None, :])[:, :, :, None]
        crops = sums.to(torch.float32) / area.to(torch.float32)
        return ((crops - 127.5) * 0.0078125).permute(0, 3, 1, 2), valid

    def _in_chunks(self, forward: Any, net: Any, crops: Any) -> Any:
        """``forward(net, crops)`` in chunks of ``CPU_CHUNK`` crops on CPU, where a large batch's
        activations fall out of cache (measured: R-Net on 512 crops at once took twice as long as in
        chunks of 64); the whole batch at once on other devices."""
        import torch

        if self.device.type != "cpu" or crops.shape[0] <= CPU_CHUNK:
            return forward(net, crops)
        parts = [forward(net, crops[i: i + CPU_CHUNK]) for i in range(0, crops.shape[0], CPU_CHUNK)]
        return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))

    def _refine(self, integral: Any, sizes: Any, boxes: Any, inds: Any) -> tuple[Any, Any, Any]:
        import torch

        s = self.settings
        # R-Net
        crops, valid = self._crops(integral, boxes, inds, sizes, 24)
        boxes, inds = boxes[valid], inds[valid]
        if boxes.shape[0] == 0:
            return boxes, inds, torch.zeros((0, 5, 2), device=self.device)
        reg, prob = self._in_chunks(_rnet_forward, self._rnet, crops)
        score = prob[:, 1]
        keep = score > s.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], score[keep, None]], dim=1)
        inds, reg = inds[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds, reg = boxes[pick], inds[pick], reg[pick]
        boxes = _rerec(_bbreg(boxes, reg))
        # O-Net
        crops, valid = self._crops(integral, boxes, inds, sizes, 48)
        boxes, inds = boxes[valid], inds[valid]
        if boxes.shape[0] == 0:
            return boxes, inds, torch.zeros((0, 5, 2), device=self.device)
        reg, marks, prob = self._in_chunks(_onet_forward, self._onet, crops)
        score = prob[:, 1]
        keep = score > s.thresholds[2]
        boxes = torch.cat([boxes[keep, :4], score[keep, None]], dim=1)
        inds, reg, marks = inds[keep], reg[keep], marks[keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        px = w[:, None] * marks[:, :5] + boxes[:, 0, None] - 1
        py = h[:, None] * marks[:, 5:] + boxes[:, 1, None] - 1
        points = torch.stack([px, py], dim=2)
        boxes = _bbreg(boxes, reg)
        pick = min_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        return boxes[pick], inds[pick], points[pick]

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Detect faces on a batch of images of any sizes; images with no face get ``[]``.

        On CUDA the whole batch goes through each stage at once. On CPU batching buys nothing and
        large batched activations fall out of cache (measured: a batch of 8 ran at half the
        images/s of one image at a time), so the batch is run one image after the other.
        """
        if self.device.type == "cpu" and len(images) > 1:
            return [self._detect_batch([image])[0] for image in images]
        return self._detect_batch(images)

    def _detect_batch(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        import torch

        results: list[list[Face]] = [[] for _ in images]
        searchable = [i for i, im in enumerate(images) if min(im.size) >= 12]
        if not searchable:
            return results
        chosen = [images[i] for i in searchable]
        with torch.inference_mode():
            integral, sizes = self._integral(chosen)
            boxes, inds = self._pnet_stage(integral, chosen)
            if boxes.shape[0] == 0:
                return results
            boxes, inds, points = self._refine(integral, sizes, boxes, inds)
            boxes_np = boxes.cpu().numpy().astype(float)
            inds_np = inds.cpu().numpy()
            points_np = points.cpu().numpy().astype(float)
        for box, ind, marks in zip(boxes_np, inds_np, points_np, strict=True):
            landmarks = tuple((float(px), float(py)) for px, py in marks)
            results[searchable[int(ind)]].append(
                Face(float(box[0]), float(box[1]), float(box[2]), float(box[3]), float(box[4]),
                     FAST_MTCNN, landmarks))
        return results


def _rerec(boxes: Any) -> Any:
    """Square boxes around their centres (facenet-pytorch's ``rerec``), out of place."""
    import torch

    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.cat([torch.stack([x1, y1, x1 + side, y1 + side], dim=1), boxes[:, 4:]], dim=1)


def _bbreg(boxes: Any, reg: Any) -> Any:
    """Apply box regression (facenet-pytorch's ``bbreg``), out of place."""
    import torch

    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    moved = torch.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                         boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], dim=1)
    return torch.cat([moved, boxes[:, 4:]], dim=1)
