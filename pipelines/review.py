"""``anonymize review <output>``: a local review page for a run's output (standard-library HTTP
server on 127.0.0.1).

The page shows the anonymized outputs only: a seeded random audit sample (its size from a target
confidence and margin, transforms/review.py), a borderline queue (low scores, scores near the
thresholds, identity statuses worth a look) and the withheld records with their reasons. An
original is shown only when the server was started with ``--allow-originals`` and the reviewer
asks for it, and each showing is an audit entry. Every verdict is an audit entry; a marked miss
quarantines the record (reason ``review:missed_face``) through the erasure machinery
(transforms/erasure.py), so its output is removed or its shard rewritten and it is never
published again; the report is rebuilt with its "Human review" section.

The API takes a per-server token in a header (a page of another origin cannot read it, and cannot
send the header without a preflight this server never answers) and only a loopback Host.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlparse

from PIL import Image

from pipelines.erase import _rebuild_report, image_column_of
from transforms.audit import append_entry, read_entries
from transforms.erasure import ErasureError, ErasureRequest, erase_shard, verify_shard
from transforms.io_parquet import read_row_image
from transforms.io_webdataset import read_member
from transforms.manifest import read_manifests
from transforms.records import QUARANTINED
from transforms.review import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGIN,
    IMAGE_VERDICTS,
    MISSED,
    MISSED_FACE_REASON,
    NOT_A_FACE,
    OPENED,
    ORIGINAL_SHOWN,
    SAMPLE,
    SIGNOFF,
    VERDICT,
    VERDICTS,
    ReviewRecord,
    apply_verdict,
    borderline_reasons,
    draw_sample,
    population_sha256,
    published_rows,
    review_records,
    review_summary,
    sample_size,
)
from transforms.storage import DEFAULT_STORAGE, Storage
from transforms.summary import LOW_DETECTION_SCORE

SHOWN_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
MAX_BODY = 1 << 20


class ReviewError(ValueError):
    """A request the review cannot take (unknown record, no reviewer name, a withdrawn image...)."""


def read_image_bytes(uri: str, member: str, storage: Storage = DEFAULT_STORAGE) -> bytes | None:
    """An image's bytes: a file, a tar shard's member, or a Parquet row's image; None if absent."""
    shard, _, fragment = uri.partition("#")
    if fragment.startswith("row=") and shard.endswith(".parquet"):
        return read_row_image(shard, int(fragment[len("row="):]), storage)
    if fragment and shard.endswith(".tar"):
        return read_member(shard, member, storage)
    if fragment:
        return None
    fs, path = storage.filesystem(uri)
    return bytes(fs.cat_file(path)) if fs.exists(path) else None


def browser_image(data: bytes) -> tuple[bytes, str]:
    """The bytes and content type to send: as they are when a browser shows the format, else PNG."""
    with Image.open(io.BytesIO(data)) as image:
        kind = SHOWN_FORMATS.get(str(image.format))
        if kind:
            return data, kind
        out = io.BytesIO()
        image.convert("RGB").save(out, "PNG")
        return out.getvalue(), "image/png"


def _policy(entries: list[dict[str, Any]]) -> dict[str, Any]:
    for entry in reversed(entries):
        if entry.get("kind") in ("run", "run_started") and entry.get("policy"):
            return dict(entry["policy"])
    return {}


def _float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None


def quarantined_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest row withdrawn by a review: quarantined with ``review:missed_face``, no output; its
    detections and figures kept (they say what the pipeline did)."""
    return dict(row) | {"status": QUARANTINED, "reason": MISSED_FACE_REASON, "output_uri": None,
                        "output_sha256": None}


def quarantine_record(output: str, row: Mapping[str, Any], review_id: str, storage: Storage = DEFAULT_STORAGE,
                      rebuild_report: bool = True) -> dict[str, Any]:
    """Withdraw one published record through the erasure machinery and verify it is gone; then
    (``rebuild_report``) remove the report's gallery, which may show it, and rebuild the report.

    Returns:
        What changed (``data_rewritten``, ``files_removed``) and ``problems`` (empty when verified).
    """
    request = ErasureRequest(frozenset({str(row["source_uri"])}))
    image_column = image_column_of(output, storage)
    shard_id = str(row["shard_id"])
    try:
        done = erase_shard(output, shard_id, request, review_id, storage, image_column, mark=quarantined_row)
    except ErasureError as error:
        return {"shard_id": shard_id, "quarantined": False, "problems": [str(error)]}
    problems = verify_shard(output, shard_id, request, storage, image_column,
                            frozenset(done.erased_output_sha256), removed_status=QUARANTINED)
    if rebuild_report:
        _rebuild_report(output, storage)
    return {"shard_id": shard_id, "quarantined": done.erased == 1 and not problems,
            "data_rewritten": done.data_rewritten, "files_removed": done.files_removed, "problems": problems}


@dataclass
class ReviewSession:
    """One review server's state: the output, its sample, the queues, and the recording."""

    output: str
    storage: Storage = DEFAULT_STORAGE
    allow_originals: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    record: ReviewRecord | None = None
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _load(self) -> None:
        self.rows = {row["record_id"]: row for row in read_manifests(self.output, self.storage).to_pylist()}

    def open(self, seed: int | None = None, confidence: float = DEFAULT_CONFIDENCE, margin: float = DEFAULT_MARGIN,
             new_sample: bool = False, operator: str = "") -> ReviewRecord:
        """Resume the output's latest sample, or draw and record a new one (``new_sample``, a different
        seed, confidence or margin, or none yet); records that a review server opened.

        Raises:
            ValueError: a bad confidence or margin, or an output without manifests.
        """
        target = sample_size(confidence, margin)
        self._load()
        if not self.rows:
            raise ValueError(f"review: no manifest rows under {self.output}/manifest (not a run's output?)")
        entries = read_entries(self.output, self.storage)
        self.policy = _policy(entries)
        previous = review_records(entries)
        latest = previous[-1] if previous else None
        if latest is None or new_sample or (seed is not None and seed != latest.seed) or \
                (latest.confidence, latest.margin) != (confidence, margin):
            seed = seed if seed is not None else secrets.randbelow(2**31)
            population = published_rows(self.rows.values())
            ids = [r["record_id"] for r in population]
            sample = draw_sample(ids, target, seed)
            with_faces = sum(1 for r in sample if self.rows[r]["face_count"])
            entry = append_entry(self.output, SAMPLE, {
                "review_id": uuid.uuid4().hex, "seed": seed, "confidence": confidence, "margin": margin,
                "target_size": target, "population": len(ids), "population_sha256": population_sha256(ids),
                "population_with_faces": sum(1 for r in population if r["face_count"]),
                "sample": sample, "sample_with_faces": with_faces, "sample_without_faces": len(sample) - with_faces,
                "sample_shards": {r: self.rows[r]["shard_id"] for r in sample},
                "method": "simple random sample without replacement over the published images, "
                          "with and without detected faces (random.Random(seed).sample of the sorted record ids)",
            }, self.storage, operator)
            entries.append(entry)
        self.record = review_records(entries)[-1]
        append_entry(self.output, OPENED, {"review_id": self.record.review_id,
                                           "originals_allowed": self.allow_originals}, self.storage, operator)
        return self.record

    def _item(self, record_id: str, queue: str, why: list[str]) -> dict[str, Any]:
        row = self.rows[record_id]
        assert self.record is not None
        verdict = self.record.verdicts.get(record_id)
        statuses = row.get("face_identity_statuses") or []
        return {
            "record_id": record_id, "queue": queue, "why": why, "shard_id": row["shard_id"],
            "relative_path": row.get("relative_path"), "status": row["status"], "reason": row.get("reason"),
            "width": row.get("width"), "height": row.get("height"),
            "faces": [{"x1": f["x1"], "y1": f["y1"], "x2": f["x2"], "y2": f["y2"], "score": f.get("score"),
                       "status": statuses[i] if i < len(statuses) else None}
                      for i, f in enumerate(row.get("faces") or [])],
            "has_image": row["status"] == "published" and bool(row.get("output_uri")),
            "verdict": verdict.get("verdict") if verdict else None,
            "reviewer": verdict.get("reviewer") if verdict else None,
            "not_a_face": sorted({int(a["face_index"]) for a in self.record.annotations
                                  if a["record_id"] == record_id}),
        }

    def state(self) -> dict[str, Any]:
        """The page's data: the sample, the borderline queue, the withheld records, the figures so far."""
        with self.lock:
            assert self.record is not None
            sample_ids = set(self.record.sample)
            sample = [self._item(r, "sample", []) for r in self.record.sample if r in self.rows]
            threshold = _float_or_none(self.policy.get("detector_score_threshold"))
            verify = _float_or_none(self.policy.get("verify_score_threshold"))
            borderline = []
            for row in published_rows(self.rows.values()):
                why = borderline_reasons(row, LOW_DETECTION_SCORE, threshold, verify)
                if why and row["record_id"] not in sample_ids:
                    borderline.append(self._item(row["record_id"], "borderline", why))
            withheld = [self._item(r["record_id"], "withheld", [str(r.get("reason") or "")])
                        for r in sorted(self.rows.values(), key=lambda r: (r["shard_id"], r["shard_index"]))
                        if r["status"] == QUARANTINED and r["record_id"] not in sample_ids]
            entries = read_entries(self.output, self.storage)
            summary = review_summary(entries, {r["shard_id"] for r in self.rows.values()})
            return {"review_id": self.record.review_id, "seed": self.record.seed,
                    "confidence": self.record.confidence, "margin": self.record.margin,
                    "population": self.record.population, "originals_allowed": self.allow_originals,
                    "items": sample + borderline + withheld, "summary": summary}

    def output_image(self, record_id: str) -> tuple[bytes, str]:
        """The anonymized output of a published record (never an original).

        Raises:
            ReviewError: unknown record, or no published output (withheld or withdrawn).
        """
        row = self.rows.get(record_id)
        if row is None or row["status"] != "published" or not row.get("output_uri"):
            raise ReviewError(f"record {record_id}: no published output to show")
        data = read_image_bytes(str(row["output_uri"]), str(row.get("relative_path") or ""), self.storage)
        if data is None:
            raise ReviewError(f"record {record_id}: its output could not be read")
        return browser_image(data)

    def original_image(self, record_id: str, reviewer: str) -> tuple[bytes, str]:
        """The original of a record, only when originals are allowed; the showing is recorded first.

        Raises:
            ReviewError: originals not allowed, no reviewer named, unknown or unreadable record.
        """
        if not self.allow_originals:
            raise ReviewError("originals are not shown: start anonymize review with --allow-originals")
        reviewer = _reviewer(reviewer)
        row = self.rows.get(record_id)
        if row is None:
            raise ReviewError(f"unknown record {record_id}")
        member = str(row.get("source_uri") or "").partition("#")[2]
        data = read_image_bytes(str(row["source_uri"]), member, self.storage)
        if data is None:
            raise ReviewError(f"record {record_id}: its original could not be read from {row['source_uri']}")
        assert self.record is not None
        append_entry(self.output, ORIGINAL_SHOWN, {"review_id": self.record.review_id, "record_id": record_id,
                                                   "shard_id": row["shard_id"], "reviewer": reviewer},
                     self.storage, reviewer)
        return browser_image(data)

    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Record one verdict (``ok``, ``missed_face`` with boxes, ``not_a_face`` with a face index);
        a miss quarantines the record. Returns the audit entry.

        Raises:
            ReviewError: a malformed verdict, no reviewer, unknown record, or a withdrawn image.
        """
        with self.lock:
            assert self.record is not None
            reviewer = _reviewer(body.get("reviewer"))
            record_id = str(body.get("record_id") or "")
            verdict = str(body.get("verdict") or "")
            row = self.rows.get(record_id)
            if row is None:
                raise ReviewError(f"unknown record {record_id!r}")
            if verdict not in VERDICTS:
                raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
            if row["status"] != "published":
                raise ReviewError(f"record {record_id} is {row['status']} ({row.get('reason')}): nothing published "
                                  "to judge")
            payload: dict[str, Any] = {
                "review_id": self.record.review_id, "record_id": record_id, "shard_id": row["shard_id"],
                "relative_path": row.get("relative_path"), "output_sha256": row.get("output_sha256"),
                "verdict": verdict, "reviewer": reviewer, "in_sample": record_id in self.record.sample,
                "queue": str(body.get("queue") or ""), "original_shown": bool(body.get("original_shown")),
            }
            if verdict == NOT_A_FACE:
                index = body.get("face_index")
                if not isinstance(index, int) or not 0 <= index < len(row.get("faces") or []):
                    raise ReviewError("not_a_face needs face_index, the replaced region it is about")
                payload["face_index"] = index
                payload["face"] = dict((row.get("faces") or [])[index])
            if verdict == MISSED:
                payload["boxes"] = _boxes(body.get("boxes"), row)
                payload["quarantine"] = quarantine_record(self.output, row, self.record.review_id, self.storage,
                                                          rebuild_report=False)
                self._load()
            entry = append_entry(self.output, VERDICT, payload, self.storage, reviewer)
            if verdict == MISSED:
                _rebuild_report(self.output, self.storage)  # after the entry: the report counts the miss
            if verdict in IMAGE_VERDICTS:
                apply_verdict(self.record.verdicts, entry)
            else:
                self.record.annotations.append(entry)
            return entry

    def signoff(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Sign a shard off: every image of the sample in it reviewed and none missing a face.

        Raises:
            ReviewError: no reviewer, unknown shard, sample images left or a miss found in it.
        """
        with self.lock:
            assert self.record is not None
            reviewer = _reviewer(body.get("reviewer"))
            shard_id = str(body.get("shard_id") or "")
            if shard_id not in {r["shard_id"] for r in self.rows.values()}:
                raise ReviewError(f"unknown shard {shard_id!r}")
            sampled = [r for r, s in self.record.sample_shards.items() if s == shard_id]
            left = [r for r in sampled if r not in self.record.verdicts]
            misses = [r for r in sampled if self.record.verdicts.get(r, {}).get("verdict") == MISSED]
            if left:
                raise ReviewError(f"shard {shard_id}: {len(left)} image(s) of the sample not reviewed yet")
            if misses:
                raise ReviewError(f"shard {shard_id}: {len(misses)} image(s) of the sample missed a face; "
                                  "it cannot be signed off")
            entry = append_entry(self.output, SIGNOFF, {
                "review_id": self.record.review_id, "shard_id": shard_id, "reviewer": reviewer,
                "sample_images": len(sampled)}, self.storage, reviewer)
            self.record.signoffs[shard_id] = entry
            return entry

    def finish(self) -> dict[str, Any]:
        """Rebuild the report (its "Human review" section) and return the review's figures."""
        with self.lock:
            _rebuild_report(self.output, self.storage)
            return review_summary(read_entries(self.output, self.storage),
                                  {r["shard_id"] for r in self.rows.values()})


def _reviewer(value: Any) -> str:
    name = str(value or "").strip()
    if not name:
        raise ReviewError("type your name first: every verdict is recorded with the reviewer's name")
    if len(name) > 200:
        raise ReviewError("the reviewer's name is too long")
    return name


def _boxes(value: Any, row: Mapping[str, Any]) -> list[list[float]]:
    """The boxes drawn for a miss, in output pixels, clipped to the image; at least one."""
    width, height = float(row.get("width") or 1e9), float(row.get("height") or 1e9)
    boxes: list[list[float]] = []
    for box in value if isinstance(value, list) else []:
        if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
            raise ReviewError("a box is [x1, y1, x2, y2] in image pixels")
        x1, x2 = sorted((min(max(float(box[0]), 0.0), width), min(max(float(box[2]), 0.0), width)))
        y1, y2 = sorted((min(max(float(box[1]), 0.0), height), min(max(float(box[3]), 0.0), height)))
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            boxes.append([round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)])
    if not boxes:
        raise ReviewError("missed_face needs at least one box drawn around the missed face")
    return boxes


def page_html(token: str) -> bytes:
    """The review page (pipelines/review_page.html) with this server's token."""
    template = resources.files("pipelines").joinpath("review_page.html").read_text(encoding="utf-8")
    return template.replace("__REVIEW_TOKEN__", token).encode()


class ReviewHandler(BaseHTTPRequestHandler):
    """The page, the images and the JSON API of one ``ReviewSession``."""

    server: ReviewServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return  # no access log: paths carry record ids

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
                         "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value, default=str).encode(), "application/json")

    def _allowed(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            self._json(HTTPStatus.FORBIDDEN, {"error": "only loopback hosts are served"})
            return False
        return True

    def _authorised(self) -> bool:
        if not secrets.compare_digest(self.headers.get("X-Review-Token") or "", self.server.session.token):
            self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong review token"})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._allowed():
            return
        session = self.server.session
        path = urlparse(self.path).path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page_html(session.token), "text/html; charset=utf-8")
        elif path == "/api/state" and self._authorised():
            self._json(HTTPStatus.OK, session.state())
        elif path.startswith("/image/"):
            # <img> cannot send a header: the image URL carries the token instead.
            if not secrets.compare_digest(urlparse(self.path).query, f"token={session.token}"):
                self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong review token"})
                return
            try:
                body, kind = session.output_image(path[len("/image/"):])
            except ReviewError as error:
                self._json(HTTPStatus.GONE, {"error": str(error)})
                return
            self._send(HTTPStatus.OK, body, kind)
        elif not path.startswith("/api/"):
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if not self._allowed() or not self._authorised():
            return
        session = self.server.session
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ReviewError("the request body is a JSON object")
            path = urlparse(self.path).path
            if path == "/api/verdict":
                self._json(HTTPStatus.OK, session.submit(body))
            elif path == "/api/signoff":
                self._json(HTTPStatus.OK, session.signoff(body))
            elif path == "/api/finish":
                self._json(HTTPStatus.OK, session.finish())
            elif path == "/api/original":
                data, kind = session.original_image(str(body.get("record_id") or ""), str(body.get("reviewer") or ""))
                self._send(HTTPStatus.OK, data, kind)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        except (ReviewError, ValueError) as error:
            self._json(HTTPStatus.CONFLICT, {"error": str(error)})


class ReviewServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to 127.0.0.1 that serves one review session."""

    daemon_threads = True

    def __init__(self, session: ReviewSession, port: int = 0) -> None:
        self.session = session
        super().__init__(("127.0.0.1", port), ReviewHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"
