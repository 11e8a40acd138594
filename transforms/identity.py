"""Identity evidence: how far each replaced face is from the original, by a face-embedding model.

The model is dlib's 128-D face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``)
with its 5-point shape predictor, both shipped in the ``face_recognition_models`` wheel (the
68-point iBUG model in that package is not used: its training data is not for commercial use).
Two faces closer than ``MATCH_THRESHOLD`` (0.6, dlib's published operating point) are the same
person for this model.

The distance of a replaced face is the smaller of two measurements: the anonymized image embedded
with the original face's alignment (the attacker knows where the face was), and with an alignment
found on the anonymized image itself. Both are taken at the detected box.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transforms.records import Face

MATCH_THRESHOLD = 0.6
# Faces whose box's shorter side is under this many px are measured but not gated: under ~20 px
# a face is not identifiable (DESIGN.md), and the embedding of such a blob is not evidence.
MIN_GATED_FACE = 20.0
MODEL_NAME = "dlib_face_recognition_resnet_model_v1+shape_predictor_5_face_landmarks"
EMBEDDING_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHECKED = "checked"
SKIPPED = "skipped"


def gated_match(short_side: float, distance: float, threshold: float = MATCH_THRESHOLD) -> bool:
    """Whether a replaced face still matches its original where it counts: a face of
    ``MIN_GATED_FACE`` px or more at ``distance`` <= ``threshold`` (verification quarantines it,
    replacement escalates it first)."""
    return distance <= threshold and short_side >= MIN_GATED_FACE


def models_folder() -> str | None:
    """The ``models`` folder of ``face_recognition_models``, without importing it (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], "models")
    return folder if os.path.isdir(folder) else None


def embedding_model_path() -> Path | None:
    """dlib's face-recognition ResNet file in ``face_recognition_models``, or None."""
    folder = models_folder()
    return None if folder is None else Path(folder) / EMBEDDING_MODEL_FILE


def check_embedding_model() -> None:
    """Read the embedding network's weights once, so that a damaged or foreign model file stops the
    job before any work (about 0.1 s).

    Raises:
        ValueError: naming ``identity_check``.
    """
    from transforms.face_embedding import ModelFormatError, read_weights

    path = embedding_model_path()
    try:
        if path is None:
            raise FileNotFoundError("face_recognition_models is not installed")
        read_weights(path)
    except (OSError, ModelFormatError) as error:
        raise ValueError(f"identity_check: the face-recognition model cannot be read ({error}); "
                         "reinstall face_recognition_models, or set identity_check: false") from error


def identity_available() -> bool:
    """Whether dlib and the model files are installed (the ``identity`` extra)."""
    return importlib.util.find_spec("dlib") is not None and models_folder() is not None


@dataclass(frozen=True)
class Reference:
    """An original face measured once: its box, dlib 5-point alignment and 128-D embedding."""

    face: Face
    shape: Any
    embedding: np.ndarray


class IdentityEmbedder:
    """dlib's face embedding at a known face box; load once per worker.

    dlib finds the 5 landmarks and cuts the aligned chips; the embedding network runs in PyTorch
    (``transforms/face_embedding.py``: the same weights and outputs, about 6x faster than dlib's own
    CPU code), all chips of an image in one batch, on ``device`` (``auto``: CUDA when present).
    """

    def __init__(self, device: str = "cpu") -> None:
        folder = models_folder()
        if folder is None or importlib.util.find_spec("dlib") is None:
            raise RuntimeError("identity_check needs dlib and face_recognition_models "
                               "(pip install 'dataset-anonymizer[identity]')")
        import dlib

        from transforms.face_embedding import DlibResNet, read_weights

        self._dlib = dlib
        self._shape = dlib.shape_predictor(os.path.join(folder, "shape_predictor_5_face_landmarks.dat"))
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._net = DlibResNet(read_weights(Path(folder) / EMBEDDING_MODEL_FILE), device)

    def _rect(self, face: Face) -> object:
        return self._dlib.rectangle(int(round(face.x1)), int(round(face.y1)),
                                    int(round(face.x2)), int(round(face.y2)))

    def _chip(self, image: np.ndarray, shape: Any) -> np.ndarray:
        """The aligned chip dlib's ``compute_face_descriptor`` embeds (150 px, padding 0.25)."""
        from transforms.face_embedding import CHIP_PADDING, CHIP_SIZE

        return np.asarray(self._dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING))

    def _own_chip(self, replaced: np.ndarray, face: Face) -> np.ndarray:
        """The chip of ``replaced`` aligned on landmarks found on ``replaced`` itself at ``face``."""
        return self._chip(replaced, self._shape(replaced, self._rect(face)))

    def _embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """Embeddings [N, 128] of aligned chips, in one batch."""
        return self._net.embed(np.stack(chips))

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The 128-D embedding of the face at ``face``'s box in ``image`` (H x W x 3 uint8 RGB)."""
        image = np.ascontiguousarray(image)
        return self._embed([self._chip(image, self._shape(image, self._rect(face)))])[0]

    def reference(self, original: np.ndarray, face: Face) -> Reference:
        """The original face's 5-point alignment and embedding at ``face``'s box, to measure once per
        face and compare against every candidate replacement (``distance``)."""
        return self.references(original, [face])[0]

    def references(self, original: np.ndarray, faces: Sequence[Face]) -> list[Reference]:
        """``reference`` of each face (one batch)."""
        if not faces:
            return []
        original = np.ascontiguousarray(original)
        shapes = [self._shape(original, self._rect(face)) for face in faces]
        embeddings = self._embed([self._chip(original, shape) for shape in shapes])
        return [Reference(face, shape, embedding)
                for face, shape, embedding in zip(faces, shapes, embeddings, strict=True)]

    def same_alignment_distance(self, reference: Reference, replaced: np.ndarray) -> float:
        """Distance of ``replaced`` embedded with the original's alignment (one embedding): an upper
        bound of ``distance``, enough to rule out a candidate that cannot beat a known distance."""
        replaced = np.ascontiguousarray(replaced)
        same = self._embed([self._chip(replaced, reference.shape)])[0]
        return float(np.linalg.norm(reference.embedding - same))

    def own_alignment_distance(self, reference: Reference, replaced: np.ndarray) -> float:
        """Distance of ``replaced`` embedded with an alignment found on ``replaced`` itself."""
        replaced = np.ascontiguousarray(replaced)
        own = self._embed([self._own_chip(replaced, reference.face)])[0]
        return float(np.linalg.norm(reference.embedding - own))

    def distance(self, reference: Reference, replaced: np.ndarray) -> float:
        """The identity distance of one replaced face from its precomputed ``reference`` (see the module)."""
        return self.distances_to([reference], replaced)[0]

    def distances_to(self, references: Sequence[Reference], replaced: np.ndarray) -> list[float]:
        """Per face, ``distance`` from its reference: the original's and its own alignment on
        ``replaced``, both embedded in one batch (none of the original)."""
        if not references:
            return []
        replaced = np.ascontiguousarray(replaced)
        chips = [self._chip(replaced, reference.shape) for reference in references]
        chips += [self._own_chip(replaced, reference.face) for reference in references]
        embeddings = self._embed(chips)
        count = len(references)
        return [min(float(np.linalg.norm(reference.embedding - embeddings[i])),
                    float(np.linalg.norm(reference.embedding - embeddings[count + i])))
                for i, reference in enumerate(references)]

    def distances(self, original: np.ndarray, replaced: np.ndarray,
                  faces: Sequence[Face]) -> list[float]:
        """Per face, the identity distance between ``original`` and ``replaced`` (see the module)."""
        return self.distances_to(self.references(original, faces), replaced)
