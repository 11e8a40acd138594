"""The Beam ``ModelHandler`` that runs a detector on records: detect mode and verify mode.

The handler takes ``Record``s (encoded bytes), decodes each once, detects faces on a batch and
returns the records with their faces. The same handler re-detects on outputs in verification mode.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler
from PIL import Image

from transforms.decode import ImageRejected, load_normalized
from transforms.detection.base import Detector, DetectorFactory
from transforms.observability import timed
from transforms.records import Face, Record
from transforms.verify_scope import VERIFY_SCOPES, Box, verify_windows

# The detectors loaded in this process, by the key of the steps that share them and their factory's
# description (``repr``: the detector class and its settings): RunInference's handle is per step, so
# the two verification steps (first and second pass) would each load the same detector; they share
# one. Weak references: a detector goes when no step holds it.
_LOADED: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()
_LOADING = threading.Lock()


def load_shared(factory: DetectorFactory, shared_key: str) -> Detector:
    """``factory()``, or the detector an equal factory with the same ``shared_key`` already loaded
    in this process."""
    key = (shared_key, repr(factory))
    with _LOADING:
        detector = _LOADED.get(key)
        if detector is None:
            detector = factory()
            _LOADED[key] = detector
        return detector


class FaceDetectionHandler(ModelHandler[Record, Record, Detector]):
    """Runs a face detector on batches of records.

    In ``detect`` mode the records' faces are set; in ``verify`` mode the records' bytes are the
    anonymized outputs and ``residual_faces`` counts faces at or above ``verify_threshold``.
    A record that cannot be decoded or detected is quarantined with the reason; a batch that
    fails is retried image by image so one bad image never takes its neighbours with it.
    With ``reuse_same_pixels`` (verify mode; only when this detector is the detect stage's, or that
    one less detection-only extras), a record whose output decodes to exactly the pixels the detect
    stage searched (``output_same_pixels``) keeps that run's faces instead of a second, identical
    run: a detector gives the same faces on the same pixels.
    With ``scope`` ``regions`` (verify mode), an output whose changes are known (``changed_regions``)
    is searched only in windows around them, by a detector that searches a window as it is in the
    whole image (not the text detector) (``transforms/verify_scope.py`` says why that suffices),
    or whole where the windows would cover most of it; ``full`` searches every output whole.
    The model loads once per worker process (RunInference's ``shared.Shared`` handle), shared by
    its threads, and with a ``shared_key`` by the other steps of that key that run an equal factory
    (``load_shared``: the job's two verification steps); with
    ``share_across_processes`` once per machine (Beam's ``MultiProcessShared``).
    """

    def __init__(self, factory: DetectorFactory, batch_size: int, max_pixels: int,
                 mode: str = "detect", verify_threshold: float = 0.9,
                 share_across_processes: bool = False, reuse_same_pixels: bool = False,
                 scope: str = "full", shared_key: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if mode not in ("detect", "verify"):
            raise ValueError(f"mode must be detect or verify, got {mode!r}")
        if scope not in VERIFY_SCOPES:
            raise ValueError(f"verify_scope must be one of {', '.join(VERIFY_SCOPES)}, got {scope!r}")
        super().__init__()
        self._factory = factory
        self._batch_size = batch_size
        self._max_pixels = max_pixels
        self._mode = mode
        self._verify_threshold = verify_threshold
        self._share_across_processes = share_across_processes
        self._shared_key = shared_key
        self._reuse_same_pixels = reuse_same_pixels and mode == "verify"
        # Only a detector that searches a window as it would the window's pixels in the whole image
        # (no rescaling to its own input size; ``searches_windows`` of the factory, default True).
        self._in_regions = scope == "regions" and mode == "verify" and getattr(factory, "searches_windows", True)

    def load_model(self) -> Detector:
        return self._factory() if self._shared_key is None else load_shared(self._factory, self._shared_key)

    def share_model_across_processes(self) -> bool:
        """One model per worker machine, served to its SDK processes (GPU memory), when asked for."""
        return self._share_across_processes

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def _apply(self, record: Record, faces: Sequence[Face], how: str = "ran") -> Record:
        if self._mode == "detect":
            return record.replace(faces=tuple(faces))
        residual = sum(1 for face in faces if face.counts_at(self._verify_threshold))
        return record.replace(residual_faces=residual, output_faces=tuple(faces), verify_detection=how)

    def _searched(self, record: Record, image: Image.Image) -> tuple[Box, ...] | None:
        """The windows of ``image`` to search (None: all of it)."""
        if not self._in_regions or not record.changed_regions:
            return None
        return verify_windows(record.changed_regions, image.width, image.height)

    def run_inference(self, batch: Sequence[Record], model: Detector,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Record]:
        stage = "detect" if self._mode == "detect" else "verify"
        out: list[Record | None] = [None] * len(batch)
        # Per record searched: its position, the images to search (the whole image or its windows),
        # where each lies in the record's image, and how it was searched.
        searches: list[tuple[int, list[Image.Image], list[tuple[int, int]], str]] = []
        for i, record in enumerate(batch):
            if record.is_quarantined:
                out[i] = record
                continue
            if self._reuse_same_pixels and record.output_same_pixels:
                out[i] = self._apply(record, record.output_faces, "reused")
                continue
            try:
                with timed(f"{stage}:decode"):
                    image, _ = load_normalized(record.data, self._max_pixels)
            except ImageRejected as rejected:
                out[i] = record.quarantine(f"{stage}:{rejected.reason}")
                continue
            windows = self._searched(record, image)
            if windows is None:
                searches.append((i, [image], [(0, 0)], "ran"))
            else:
                searches.append((i, [image.crop(w) for w in windows], [(w[0], w[1]) for w in windows], "regions"))
        images = [crop for _, crops, _, _ in searches for crop in crops]
        try:
            with timed(stage, len(searches)):
                found = model.detect(images) if images else []
            per_record: list[list[list[Face]] | None] = []
            start = 0
            for _, crops, _, _ in searches:
                per_record.append(found[start:start + len(crops)])
                start += len(crops)
        except Exception:  # noqa: BLE001 - retried record by record below; failures are quarantined
            per_record = []
            for i, crops, _, _ in searches:
                try:
                    per_record.append(model.detect(crops))
                except Exception as error:  # noqa: BLE001 - a detector error quarantines
                    per_record.append(None)
                    out[i] = batch[i].quarantine(f"{stage}:detector_error:{type(error).__name__}")
        for (i, _, offsets, how), detections in zip(searches, per_record, strict=True):
            if out[i] is not None or detections is None:
                continue
            faces = [face.mapped(dx=dx, dy=dy) for (dx, dy), in_crop in zip(offsets, detections, strict=True)
                     for face in in_crop]
            out[i] = self._apply(batch[i], faces, how)
        return [record for record in out if record is not None]

    def get_metrics_namespace(self) -> str:
        return f"anonymize_{self._mode}"
