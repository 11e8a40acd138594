"""The report's "Human review" section and the review verdict, from the audit log's review entries
(transforms/review.py)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from transforms.audit import read_entries
from transforms.review import REVIEWED, review_summary
from transforms.storage import Storage


def review_figures(output: str, storage: Storage, shard_ids: Iterable[str]) -> dict[str, Any]:
    """The review's figures for the report and ``summary.json`` (``verdicts.review``)."""
    return review_summary(read_entries(output, storage), shard_ids)


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def render_review(review: Mapping[str, Any]) -> str:
    """The "Human review" section: images reviewed, misses found, the bound, the shards signed off."""
    if not review.get("review_id"):
        return ('<p id="review-none">No human review has been recorded for this output. '
                "<code>anonymize review &lt;output&gt;</code> serves a review page: a random audit sample whose "
                "verdicts give an upper bound on the share of published images with a missed face.</p>")
    shards = "".join(
        f"<tr><td>{html.escape(str(s['shard_id']))}</td><td>{s['sampled']}</td><td>{s['reviewed']}</td>"
        f"<td>{s['misses']}</td><td>"
        + (f'<span class="pass">signed off</span> by {html.escape(str(s["signed_off"]["by"]))}, '
           f'{html.escape(str(s["signed_off"]["at"])[:16])}' if s.get("signed_off") else "not signed off")
        + "</td></tr>" for s in review.get("shards") or [])
    bound = float(review.get("upper_bound", 1.0))
    n, k = int(review.get("sample_reviewed", 0)), int(review.get("sample_misses", 0))
    confidence = float(review.get("confidence", 0.95))
    return f"""<p id="review-text"><strong>{html.escape(str(review["verdict"]))}.</strong>
{html.escape(str(review["text"])[:1].upper() + str(review["text"])[1:])}.</p>
<table id="review-figures">
<tr><th>images reviewed (sample and borderline)</th><td id="review-images">{review.get("images_reviewed", 0)}</td></tr>
<tr><th>misses found (each quarantined as review:missed_face)</th>
<td id="review-misses">{review.get("misses_found", 0)}</td></tr>
<tr><th>random audit sample</th><td>{n} of {review.get("sample_size", 0)} reviewed, {k} with a missed face
(seed {review.get("seed")}, drawn over {review.get("population", 0)} published images with and without people)</td></tr>
<tr><th>upper bound on the share of published images with a missed face</th>
<td id="review-bound" data-bound="{bound:.6f}">{_percent(bound)} at {_percent(confidence)} confidence
(exact one-sided Clopper-Pearson, {k} of {n})</td></tr>
<tr><th>replaced regions marked "not a face"</th><td>{review.get("not_a_face_marks", 0)}</td></tr>
<tr><th>originals shown to a reviewer (recorded)</th><td>{review.get("originals_shown", 0)}</td></tr>
<tr><th>reviewers</th><td>{html.escape(", ".join(review.get("reviewers") or []) or "-")}</td></tr>
</table>
<p>The bound counts only the random sample: the borderline queue is chosen, not drawn, so it says nothing of
the other images. Every verdict is an entry of the audit log (<code>anonymize audit verify</code>).</p>
<table id="review-shards"><tr><th>shard</th><th>sample images</th><th>reviewed</th><th>misses</th>
<th>sign-off</th></tr>{shards}</table>
"""


def review_badge(review: Mapping[str, Any]) -> str:
    """The verdict badge at the top of the report."""
    reviewed = review.get("verdict") == REVIEWED
    return (f'<span id="reviewed" class="verdict {"ok" if reviewed else "warn"}">'
            f'{html.escape(str(review.get("verdict")))}</span>')
