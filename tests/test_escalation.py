"""One image through the ``Anonymizer`` alone (transforms/escalation.py), without Beam: replaced,
encoded, decoded; without identity evidence nothing is escalated. Escalation under evidence is
tested through the stage in tests/test_synthesis_identity.py."""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data as skdata

from tests.helpers import jpeg_bytes
from transforms.decode import load_normalized
from transforms.escalation import Anonymizer
from transforms.identity_evidence import IdentityPolicy
from transforms.output_encoding import SPLICED, STRIPPED, OutputEncoder
from transforms.records import Face
from transforms.replacement import ReplacementPolicy, replace_faces

FACE = Face(170.0, 40.0, 240.0, 125.0, 0.99, "fixed")


def _anonymizer(method: str = "gaussian") -> Anonymizer:
    return Anonymizer(ReplacementPolicy(method=method), IdentityPolicy(), OutputEncoder(10**8, 95))


def test_faces_are_replaced_and_the_output_is_what_its_bytes_decode_to() -> None:
    data = jpeg_bytes(Image.fromarray(skdata.astronaut()).resize((400, 400)))
    image, fmt = load_normalized(data, 10**8)
    rendering = _anonymizer().anonymize("key", data, image, fmt, (FACE,))
    assert rendering.encoding == SPLICED and rendering.escalations == (0,) and rendering.evidence is None
    assert rendering.measurable == (False,)
    expected = np.asarray(replace_faces(image, [FACE], ReplacementPolicy()))
    assert np.array_equal(np.asarray(rendering.anonymized), expected)
    decoded = np.asarray(load_normalized(rendering.output.data, 10**8)[0], np.int16)
    assert np.array_equal(np.asarray(rendering.output.decoded), decoded)
    x1, y1, x2, y2 = (int(v) for v in FACE.box)
    assert np.abs(decoded[y1:y2, x1:x2] - expected[y1:y2, x1:x2]).mean() < 2  # the splice's JPEG noise only
    assert np.abs(decoded[y1:y2, x1:x2] - np.asarray(image, np.int16)[y1:y2, x1:x2]).mean() > 5


def test_a_faceless_jpeg_is_kept_and_unmeasurable_faces_are_never_substituted() -> None:
    data = jpeg_bytes(Image.fromarray(skdata.coffee()))
    image, fmt = load_normalized(data, 10**8)
    kept = _anonymizer().anonymize("key", data, image, fmt, ())
    assert kept.encoding == STRIPPED and kept.anonymized is image
    # No embedder: no face is measurable, so synthetic blurs every face as gaussian does.
    portrait = jpeg_bytes(Image.fromarray(skdata.astronaut()).resize((400, 400)))
    image, fmt = load_normalized(portrait, 10**8)
    synthetic = Anonymizer(ReplacementPolicy(method="synthetic"), IdentityPolicy(), OutputEncoder(10**8, 95))
    rendering = synthetic.anonymize("key", portrait, image, fmt, (FACE,))
    blurred = replace_faces(image, [FACE], ReplacementPolicy())
    assert np.array_equal(np.asarray(rendering.anonymized), np.asarray(blurred))
