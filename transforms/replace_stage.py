"""The replace stage: each record's faces replaced, the output encoded without metadata, its
identity evidence and quality measured (Beam label ``Replace``, and ``ReplaceAgain`` for a second pass).

The parts, each testable alone: replacement (``replacement.py``), identity evidence and escalation
(``escalation.py``), encoding and metadata stripping (``output_encoding.py``), quality metrics
(``metrics.py``), and where verification must search (``verify_scope.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from PIL import Image

from transforms.accuracy import ReferenceSampling, pack_views
from transforms.decode import ImageRejected, load_normalized
from transforms.escalation import Anonymizer, Rendering
from transforms.failures import quarantine_failures
from transforms.identity import CHECKED, SKIPPED, IdentityEmbedder
from transforms.identity_evidence import IdentityPolicy
from transforms.metrics import ImageQuality, image_quality
from transforms.observability import timed
from transforms.output_encoding import STRIPPED, OutputEncoder, same_pixels
from transforms.records import Record
from transforms.replacement import Box, ReplacementPolicy, grown_box, one_box_per_face
from transforms.storage import DEFAULT_STORAGE, Storage
from transforms.synthesis import GeneratorError, load_generator
from transforms.verify_scope import changed_mask, changed_regions_of

DEFAULT_IDENTITY = IdentityPolicy()


@dataclass(frozen=True)
class OutputMeasures:
    """What the replace stage measures on an output against its source: the share of pixels the
    replacement changed, the regions verification must search (``changed_regions_of``), and the
    image quality (``image_quality``)."""

    pixel_change: float
    changed_regions: tuple[Box, ...]
    quality: ImageQuality


def measure_output(image: Image.Image, rendering: Rendering, regions: Sequence[Box]) -> OutputMeasures:
    """``OutputMeasures`` of ``rendering`` (``image`` anonymized) with the replaced ``regions``."""
    source = np.asarray(image.convert("RGB"))
    output = rendering.output
    replaced = output.replaced if output.replaced is not None else \
        changed_mask(source, np.asarray(rendering.anonymized.convert("RGB")))
    # Where verification searches: where the output's pixels differ from those the detect stage
    # searched (a spliced JPEG: around the faces; a re-encoded one: everywhere), and the regions
    # the replacements own (transforms/verify_scope.py).
    differs = output.differs if output.differs is not None else \
        changed_mask(source, np.asarray(output.decoded.convert("RGB")))
    return OutputMeasures(float(replaced.mean()) if replaced.size else 0.0,
                          changed_regions_of(differs, owned=regions), image_quality(image, output.decoded, regions))


class ReplaceFaces(beam.DoFn):
    """Replace the faces of each record and re-encode it without metadata.

    The output record's ``data`` is the anonymized, metadata-free image; the manifest fields
    ``method``, ``security_level`` and ``metadata_removed`` are set. A record whose image cannot
    be re-decoded or re-encoded is quarantined.

    With ``identity_check``, identity evidence is taken and used under ``identity`` (threshold,
    smallest measurable face, escalation).

    The decoded output is compared with the original (PSNR, SSIM, whole and outside the replaced
    regions). With ``reference`` set, sampled records also carry both images' reference-model
    views (``sample_cutoff`` is the sampling side input; None: every record).

    With ``keep_unchanged_jpeg``, a JPEG with no face to replace keeps its compressed data, every
    metadata segment dropped (``strip_jpeg_metadata``), when that decodes to the very pixels the
    detect stage searched; otherwise it is re-encoded. A record whose output decodes to those
    pixels (stripped, or lossless with no face replaced) gets ``output_same_pixels`` and its
    detected faces as ``output_faces``: verification may reuse that detection run.
    """

    def __init__(self, policy: ReplacementPolicy, max_pixels: int, quality: int,
                 reference: ReferenceSampling | None = None, identity_check: bool = False,
                 identity: IdentityPolicy = DEFAULT_IDENTITY, storage: Storage = DEFAULT_STORAGE,
                 identity_device: str = "cpu", keep_unchanged_jpeg: bool = True, keep_source: bool = False) -> None:
        self._policy = policy
        self._identity = identity
        self._encoder = OutputEncoder(max_pixels, quality, keep_unchanged_jpeg)
        self._max_pixels = max_pixels
        self._reference = reference
        self._identity_check = identity_check
        self._identity_device = identity_device
        self._keep_source = keep_source
        self._storage = storage
        self._anonymizer: Anonymizer | None = None

    def setup(self) -> None:
        self._ready()

    def _ready(self) -> Anonymizer:
        """The stage's ``Anonymizer``, its models loaded on first use (``setup``)."""
        if self._anonymizer is None:
            generator = load_generator(self._policy.synthetic_generator, self._policy.synthetic_generator_size,
                                       self._storage) if self._policy.method == "synthetic" else None
            embedder = IdentityEmbedder(self._identity_device) if self._identity_check else None
            self._anonymizer = Anonymizer(self._policy, self._identity, self._encoder, embedder, generator)
        return self._anonymizer

    @quarantine_failures("replace")
    def process(self, record: Record, sample_cutoff: int | None = None) -> Iterator[Record]:
        if record.is_quarantined:
            yield record
            return
        anonymizer = self._ready()
        faces = one_box_per_face([f for f in record.faces if self._policy.replaces(f)])
        try:
            with timed("replace:decode"):
                image, fmt = load_normalized(record.data, self._max_pixels)
            # Synthetic substitutes are seeded by the source's content (its record id only when no
            # hash was taken): the same image gives the same output wherever it is stored.
            rendering = anonymizer.anonymize(record.source_sha256 or record.record_id, record.data, image, fmt,
                                             faces)
            output = rendering.output
            with timed("quality"):
                width, height = image.size
                regions = [grown_box(f, self._policy.box_margin, width, height) for f in faces]
                measures = measure_output(image, rendering, regions)
                views = pack_views(image, output.decoded) if self._reference is not None and \
                    self._reference.selected(record.record_id, sample_cutoff) else b""
        except ImageRejected as rejected:
            yield record.quarantine(f"replace:{rejected.reason}")
            return
        except GeneratorError as error:
            yield record.quarantine(f"replace:generator_failed:{type(error).__name__}")
            return
        except (OSError, ValueError) as error:
            yield record.quarantine(f"replace:encode_failed:{type(error).__name__}")
            return
        except RuntimeError as error:  # dlib reports its failures as RuntimeError
            yield record.quarantine(f"replace:identity_failed:{type(error).__name__}")
            return
        methods = [self._policy.face_method(face, level, measurable) for face, level, measurable in zip(
            faces, rendering.escalations or (0,) * len(faces), rendering.measurable or (False,) * len(faces),
            strict=True)]
        # A stripped output was kept because its pixels are the searched ones; a lossless re-encoding
        # with no face replaced (PNG) may be too.
        unchanged = not faces and (output.encoding == STRIPPED or same_pixels(output.decoded, image))
        evidence = rendering.evidence
        quality = measures.quality
        yield record.replace(
            output_encoding=output.encoding, output_same_pixels=unchanged, changed_regions=measures.changed_regions,
            output_faces=record.faces if unchanged else (),
            identity_check=CHECKED if anonymizer.embedder is not None else SKIPPED,
            identity_distances=rendering.distances,
            identity_statuses=evidence.statuses if evidence is not None else (),
            identity_vectors=evidence.vectors if evidence is not None else b"",
            escalations=rendering.escalations if evidence is not None else (),
            face_methods=tuple(m for m, _ in methods), face_method_reasons=tuple(r for _, r in methods),
            generator=anonymizer.generator.name if anonymizer.generator is not None else "",
            # A first pass keeps its source for a second pass (verification finds a face on the output).
            source_data=record.data if self._keep_source and record.replace_pass == 1 else b"",
        ).replace(
            data=output.data, faces=faces, method=self._policy.method,
            security_level=self._policy.security_level, metadata_removed=tuple(output.removed),
            pixel_change=measures.pixel_change, psnr=quality.psnr, ssim=quality.ssim,
            psnr_outside_faces=quality.psnr_outside_faces, ssim_outside_faces=quality.ssim_outside_faces,
            reference_views=views)
