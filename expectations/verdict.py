"""The steward's two verdicts, in plain words: *privacy* (is what was published safe?) and
*completeness* (how much of the input was published, what was withheld and why).

Both are made from the run summary (``transforms/summary.py``) and the report's own findings, and
written into ``summary.json`` (``verdicts``), the top of ``report/index.html`` and the last lines
of ``anonymize run``. A run can be safe and incomplete: withholding fails closed, it never leaks,
but a training set that lost most of its people-photos is skewed and the steward must know.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transforms.summary import UNREADABLE_REASONS

SAFE, NOT_SAFE = "SAFE TO RELEASE", "NOT SAFE TO RELEASE"
COMPLETE, INCOMPLETE = "COMPLETE", "INCOMPLETE"


@dataclass(frozen=True)
class ReasonText:
    """A quarantine reason in plain words: why (after "because"), what it means, what to do."""

    because: str
    meaning: str
    action: str


_NOT_VERIFIED = ReasonText(
    "the anonymized image could not be verified",
    "The anonymized image could not be read back or checked: it did not decode, changed size, or was not "
    "searched for faces. It is withheld because nothing unverified is published.",
    "Send these records to review and check their source format (source_format in the manifest); "
    "max_image_pixels limits how large an output may be to decode.")
_UNREADABLE = ReasonText(
    "it could not be read as an image",
    "The source could not be read as an image (corrupt, empty, unsupported, or outside the size limits). "
    "Nothing of it was processed. Not counted in the withheld share: no policy would publish it.",
    "Fix or re-export the source file; max_image_pixels and min_image_side set the size limits.")
# Matched in order: the first prefix a reason starts with explains it.
REASONS: tuple[tuple[str, ReasonText], ...] = (
    ("verify:identity_match", ReasonText(
        "a replaced face could still match its original",
        "After its faces were replaced (and, with identity_escalation, replaced again more strongly), a "
        "replaced face the face-embedding model could read was still within identity_threshold of its original "
        "and nearer to it than to any other original or impostor: whoever has the original could still pick "
        "the person out.",
        "Use a stronger replacement (method: solid, or a larger box_margin or blur_sigma_factor), keep "
        "identity_escalation: true, and run these records again; or send them to review.")),
    ("verify:residual_faces", ReasonText(
        "a face was still found on the anonymized image",
        "The verification detector still found a face on the anonymized image (score at or above "
        "verify_score_threshold) that is not a replaced face: a face the first pass missed or only partly "
        "covered, or a false detection.",
        "Send these records to review. A larger box_margin covers faces cut at the box edge; raising "
        "verify_score_threshold would publish them unchecked.")),
    ("verify:metadata_remaining", ReasonText(
        "metadata could not be removed",
        "Metadata was still found in the anonymized output when it was read back.",
        "Send these records to review and report it as a bug, with their source format: no policy option "
        "publishes them.")),
    ("verify:", _NOT_VERIFIED),
    ("detect:", ReasonText(
        "face detection failed on it",
        "The face detector failed on this image (an error, or the image could not be prepared for it), so "
        "its faces were never found.",
        "Run these records again into a new output; if it repeats, send them to review with the log. "
        "detector_device and detector_batch_size set how the detector runs.")),
    ("replace:identity_failed", ReasonText(
        "the identity check failed on it",
        "The face-embedding model failed while measuring the replaced faces against their originals.",
        "Run these records again; if it repeats, send them to review. identity_check governs this check.")),
    ("replace:", ReasonText(
        "its faces could not be replaced or the result encoded",
        "Replacing the faces or encoding the anonymized image failed (for example the synthetic generator "
        "failed).",
        "method and synthetic_generator govern the replacement; run these records again or send them to "
        "review.")),
    ("review:missed_face", ReasonText(
        "a reviewer marked a face the detectors missed",
        "A person reviewing the anonymized output (anonymize review) drew a box around a face that was not "
        "replaced. The record was withdrawn: its output removed, its shard rewritten; the audit log has the "
        "verdict, who gave it and the box.",
        "Run these records again with a detector that finds such faces (detector_extra, a lower "
        "detector_score_threshold or detector_min_face_size), or leave them out of the training set.")),
    ("gate:", ReasonText(
        "its shard failed the Great Expectations gate",
        "Its shard failed the shard gate (see that shard's validation page): every record of a failing shard is "
        "withheld, even those that passed their own checks.",
        "Open the shard's Data Docs page for the failed expectation; gate_max_quarantine_share governs the "
        "quarantine-share expectation. Fix the cause and run the shard again.")),
    *((prefix, _UNREADABLE) for prefix in UNREADABLE_REASONS),
)
IDENTITY_STATUS_WORDS = {
    "measured_no_match": "measured and no longer matching the original",
    "matched": "measured and still matching the original",
    "removed_by_construction": "removed by construction (replaced by a fill that carries no identity)",
    "unmeasurable_small": "too small for the identity check (under identity_min_face_size, 40 px by default, "
                          "where a distance is no evidence); protected by the blur's strength",
    "unmeasurable_no_face": "not measurable (the identity model could not read a face in the original: "
                            "profile, occluded, blurred, or not a face); protected by the blur's strength",
    "not_checked": "not checked (identity_check was off)",
    "unmeasured": "without a recorded distance",
}


def explain(reason: str) -> ReasonText:
    """The plain-language text of a quarantine reason."""
    for prefix, text in REASONS:
        if reason.startswith(prefix):
            return text
    return ReasonText(f"of {reason}", "See the reason column of the manifest.", "Send these records to review.")


def percent(share: float) -> str:
    """A share as a percentage with up to three significant digits (0.565 -> '56.5%')."""
    return f"{share * 100:.3g}%"


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def privacy_verdict(safe: bool, published: int, why_not: Sequence[str]) -> dict[str, Any]:
    """Whether every published image was detected, anonymized and verified (today's checks)."""
    if safe:
        which = "the" if published == 1 else "every one of the"
        text = (f"{which} {_images(published)} published was searched for faces, had each detected face "
                "replaced and its metadata removed, and passed verification of its output; every shard passed "
                "its gate and every run check passed" if published else "no image was published")
    else:
        text = "; ".join(why_not) or "a check failed: see the shards and run-level expectations below"
    return {"verdict": SAFE if safe else NOT_SAFE, "safe": safe, "text": text}


def completeness_verdict(summary: Mapping[str, Any], complete: bool, max_withheld_share: float) -> dict[str, Any]:
    """What share of the input was published, what was withheld and why; ``complete``: whether the
    run expectation on the withheld share (bound ``max_withheld_share``) passed."""
    inputs, withheld = int(summary["inputs"]), int(summary.get("withheld", 0))
    share = float(summary.get("withheld_share", 0.0))
    because: collections.Counter[str] = collections.Counter()
    for reason, count in (summary.get("withheld_reasons") or {}).items():
        because[explain(str(reason)).because] += int(count)
    if withheld:
        text = (f"{withheld} of {_images(inputs)} withheld ({percent(share)}): "
                + ", ".join(f"{count} because {phrase}" for phrase, count in because.most_common()))
    else:
        text = f"no image withheld: {summary['published']} of {_images(inputs)} published"
    unreadable = int(summary.get("quarantined", 0)) - withheld
    others = {"could not be read as images": unreadable, "excluded by objection": int(summary.get("excluded", 0)),
              "erased": int(summary.get("erased", 0))}
    not_counted = {what: count for what, count in others.items() if count}
    if not_counted:
        text += "; not counted as withheld: " + ", ".join(f"{count} {what}" for what, count in not_counted.items())
    text += (f"; {'within' if complete else 'over'} the bound of {percent(max_withheld_share)} "
             "(gate_max_withheld_share)")
    return {"verdict": COMPLETE if complete else INCOMPLETE, "complete": complete, "text": text,
            "inputs": inputs, "published": int(summary["published"]), "withheld": withheld,
            "withheld_share": share, "max_withheld_share": max_withheld_share,
            "withheld_reasons": dict(summary.get("withheld_reasons") or {}), "not_counted": not_counted}


def not_measured_lines(figures: Mapping[str, Any] | None) -> list[str]:
    """Plain sentences on what the run did not measure (from the summary's ``not_measured``)."""
    figures = figures or {}
    faces = int(figures.get("published_faces", 0))
    lines = ["Recall was not measured on this run: there is no ground truth (labelled faces) for these images, "
             "so how many faces the detectors missed is unknown; a missed face is published as it is."]
    texts = int(figures.get("published_text_regions", 0))
    if texts:
        lines.append(f"{texts} text regions (licence plates, badges, signs) were replaced in published images; "
                     "text recall was not measured on them either, and the identity check does not apply to text.")
    unread = int(figures.get("unread_text_regions", 0))
    if unread:
        lines.append(f"{unread} regions in published images looked like text to the verify stage's text detector but "
                     "its reader could not read a character pair in them (blurred text, or shapes that are not "
                     "text); they were published as they are.")
    if not faces:
        lines.append("No face was detected in a published image: no identity check applied.")
        return lines
    statuses = figures.get("identity_statuses") or {}
    lines.append(f"Identity check of the {faces} faces in published images: " + ", ".join(
        f"{count} {IDENTITY_STATUS_WORDS.get(status, status.replace('_', ' '))}"
        for status, count in sorted(statuses.items(), key=lambda item: -item[1])) + ".")
    low, threshold = int(figures.get("low_score_detections", 0)), figures.get("low_score_threshold")
    lines.append(f"{low} of the {faces} faces in published images had a detection score under {threshold} "
                 "(uncertain detections, replaced all the same); detections the main detector scored under "
                 "detector_score_threshold were not replaced and are not counted.")
    return lines


def make_verdicts(summary: Mapping[str, Any], safe: bool, why_not: Sequence[str], complete: bool,
                  max_withheld_share: float) -> dict[str, Any]:
    """Both verdicts and the not-measured sentences, as ``summary.json`` carries them."""
    return {"privacy": privacy_verdict(safe, int(summary["published"]), why_not),
            "completeness": completeness_verdict(summary, complete, max_withheld_share),
            "not_measured": not_measured_lines(summary.get("not_measured"))}


def verdict_lines(verdicts: Mapping[str, Any]) -> list[str]:
    """One line per verdict (and one for what was not measured, and one for the human review once
    there was one), for the end of ``anonymize run`` and ``anonymize report``."""
    privacy, completeness = verdicts["privacy"], verdicts["completeness"]
    lines = [f"privacy: {privacy['verdict']}: {privacy['text']}",
             f"completeness: {completeness['verdict']}: {completeness['text']}",
             "not measured: " + " ".join(verdicts.get("not_measured") or [])]
    if (verdicts.get("review") or {}).get("reviewed"):  # a fresh run has had no review: the report says so
        lines.append(f"human review: {verdicts['review']['verdict']}: {verdicts['review']['text']}")
    return lines
