"""Whether a text region found on an output can still be read: PaddleOCR's PP-OCRv4 recognizer.

The verify stage searches every output for text again. The text detector alone is a poor judge
there: it sees the whole image at once, so blurring a face changes its context, and it finds
new blobs in pixels it passed on the input (a row of jackets, two boys side by side). What the
verify stage must rule out is *readable* text. So each text region found on an output is read by
the recognizer of the same wheel as the detector, ``ch_PP-OCRv4_rec_infer.onnx`` of
``rapidocr-onnxruntime`` 1.4.4 (Apache-2.0, about 10.9 MB, its character list in the model's
metadata; checked against its SHA-256), run here on onnxruntime and decoded as CTC (the best
class per column, repeats collapsed, blanks dropped).

A region is readable when at least ``MIN_CHARACTERS`` characters other than spaces are read at a
confidence of at least ``MIN_CONFIDENCE`` each. Measured (``benchmarks/text.py``): the
generated plates, badges and signs of every height band read at that bar before blurring and none
after; the detector's blobs on real wider-dev outputs read at most one character at 0.5 or more.
A region at least ``TALL`` times as tall as wide is also read turned a quarter both ways (vertical lines).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transforms.detection.centerface import onnx_session
from transforms.detection.text import NOT_INSTALLED, _checked_model, wheel_model_path

MODEL_FILE = "ch_PP-OCRv4_rec_infer.onnx"
MODEL_SHA256 = "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"
INPUT_HEIGHT = 48  # the model's line height
MIN_WIDTH_RATIO = 320 / 48  # lines are padded to at least 320 x 48, as PaddleOCR does
MIN_CHARACTERS = 2
MIN_CONFIDENCE = 0.5
TALL = 1.5  # a crop this many times taller than wide is also read turned (PaddleOCR's rule)


def reader_model_path() -> Path | None:
    """The recognition model of the installed ``rapidocr-onnxruntime`` wheel, found without importing it."""
    return wheel_model_path(MODEL_FILE)


@dataclass(frozen=True)
class Reading:
    """What the recognizer read in one region: the characters and each one's confidence."""

    text: str
    confidences: tuple[float, ...]

    @property
    def readable(self) -> bool:
        """At least ``MIN_CHARACTERS`` non-space characters read at ``MIN_CONFIDENCE`` or more."""
        sure = sum(1 for char, conf in zip(self.text, self.confidences, strict=True)
                   if not char.isspace() and conf >= MIN_CONFIDENCE)
        return sure >= MIN_CHARACTERS


def ctc_decode(probabilities: np.ndarray, characters: Sequence[str]) -> Reading:
    """Greedy CTC decoding of one line's ``T x C`` class probabilities (class 0 is the blank)."""
    best = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    return Reading("".join(characters[i] for i in best[keep]), tuple(float(c) for c in confidence[keep]))


def line_input(crop: np.ndarray) -> np.ndarray:
    """An ``H x W x 3`` RGB crop as the model's ``1 x 3 x 48 x W`` input (BGR, scaled to [-1, 1])."""
    import cv2

    height, width = crop.shape[:2]
    scaled = max(1, math.ceil(INPUT_HEIGHT * width / height))
    padded_width = max(scaled, int(INPUT_HEIGHT * MIN_WIDTH_RATIO))
    line = cv2.resize(np.ascontiguousarray(crop[..., ::-1]), (scaled, INPUT_HEIGHT)).astype(np.float32)
    batch = np.zeros((1, 3, INPUT_HEIGHT, padded_width), np.float32)
    batch[0, :, :, :scaled] = (line.transpose(2, 0, 1) / 127.5) - 1.0
    return batch


class TextReader:
    """PP-OCRv4's recognizer on onnxruntime, region by region."""

    def __init__(self, threads: int = 1, device: str = "auto") -> None:
        path = reader_model_path()
        if path is None:
            raise RuntimeError(NOT_INSTALLED)
        self._session: Any = onnx_session(_checked_model(path, MODEL_SHA256), threads, device)
        self._input = self._session.get_inputs()[0].name
        listed = self._session.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._characters = ["", *listed, " "]

    def _read_line(self, crop: np.ndarray) -> Reading:
        output = self._session.run(None, {self._input: line_input(crop)})[0]
        return ctc_decode(np.asarray(output[0]), self._characters)

    def read(self, image: Image.Image, box: tuple[float, float, float, float]) -> Reading:
        """The best reading of ``box`` (rounded outwards, clipped) in ``image``; a crop under
        2 px on a side reads as nothing."""
        return self.read_all(image, [box])[0]

    def read_all(self, image: Image.Image, boxes: Sequence[tuple[float, float, float, float]]) -> list[Reading]:
        """``read`` of each of ``boxes``, the image converted once."""
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        return [self._read_box(rgb, box) for box in boxes]

    def _read_box(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> Reading:
        x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
        x2, y2 = min(rgb.shape[1], math.ceil(box[2])), min(rgb.shape[0], math.ceil(box[3]))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return Reading("", ())
        crop = rgb[y1:y2, x1:x2]
        readings = [self._read_line(crop)]
        if crop.shape[0] >= TALL * crop.shape[1]:
            readings += [self._read_line(np.rot90(crop, 1)), self._read_line(np.rot90(crop, -1))]
        return max(readings, key=lambda r: sum(c >= MIN_CONFIDENCE for c in r.confidences))
