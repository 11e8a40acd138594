"""DPIA material (GDPR Article 35): ``anonymize dpia <output>`` writes ``report/dpia.md`` and
``report/dpia.html`` from the output's record of processing (audit log), run summary and manifests.

The document follows Article 35(7): (a) description of the processing, (b) necessity and
proportionality, (c) risks with the run's measured figures, (d) the measures taken. What only the
controller can write (likelihood and severity, the DPO's advice, data subjects' views, sign-off)
is left as clearly marked blanks.
"""

from __future__ import annotations

import collections
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transforms.audit import read_entries, verify_chain
from transforms.manifest import read_manifests
from transforms.storage import DEFAULT_STORAGE, Storage, join, write_atomic
from transforms.summary import STATUS_WORDS, summarise

BLANK = "TO BE COMPLETED BY THE CONTROLLER"

# One block of a section: ("p", text), ("blank", what to write), ("list", [items]) or ("table", [[cells]]).
Block = tuple[str, Any]


@dataclass(frozen=True)
class DpiaDocument:
    """Where the document was written."""

    markdown: str
    html: str


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None or value == "" else str(value)


def _pairs(mapping: Mapping[str, Any], head: tuple[str, str] = ("", "")) -> tuple[str, list[list[str]]]:
    rows = [list(head)] + [[str(k), _fmt(v)] for k, v in mapping.items()]
    return ("table", rows)


def _summary(output: str, storage: Storage) -> dict[str, Any]:
    fs, root = storage.filesystem(output)
    path = join(root, "report", "summary.json")
    if fs.exists(path):
        return dict(json.loads(bytes(fs.cat_file(path))))
    return summarise(read_manifests(output, storage), [])


def _identity_rows(identity: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    keys = ("faces", "checked", "skipped", "measured", "matched", "mean_distance", "min_distance", "escalated")
    return [["method", *keys]] + [[m, *(_fmt(fig.get(k)) for k in keys)] for m, fig in identity.items()]


def _identity_status_lines(identity: Mapping[str, Mapping[str, Any]],
                           reidentification: Mapping[str, Any]) -> list[str]:
    """The replaced faces per identity status, in words, and the re-identification test's rate."""
    totals: dict[str, int] = {}
    for fig in identity.values():
        for status, count in (fig.get("statuses") or {}).items():
            totals[status] = totals.get(status, 0) + int(count)
    lines = [f"{totals.get(status, 0)} {words}" for status, words in STATUS_WORDS.items()]
    if reidentification.get("probes"):
        lines.append(f"Re-identification test: {reidentification['hits']} of {reidentification['probes']} measured "
                     f"faces nearest their own original (rate {_fmt(reidentification.get('rate'))}, chance "
                     f"{_fmt(reidentification.get('chance'))}).")
    return lines


def _verdict_blocks(verdicts: Mapping[str, Any]) -> list[Block]:
    """The run report's two verdicts and what it did not measure (absent in summaries before them)."""
    if not verdicts:
        return []
    privacy, completeness = verdicts["privacy"], verdicts["completeness"]
    return [("list", [f"Privacy: {privacy['verdict']}: {privacy['text']}.",
                      f"Completeness: {completeness['verdict']}: {completeness['text']}.",
                      *(f"Not measured: {line}" for line in verdicts.get("not_measured") or [])])]


def build_sections(output: str, storage: Storage = DEFAULT_STORAGE) -> tuple[str, list[tuple[str, list[Block]]]]:
    """The title and sections of the document, every figure read from the output."""
    entries = read_entries(output, storage)
    runs = [e for e in entries if e.get("kind") == "run"]
    record = (runs or [e for e in entries if e.get("kind") == "run_started"] or [{}])[-1]
    summary = _summary(output, storage)
    rows = read_manifests(output, storage).to_pylist()
    chain = verify_chain(output, storage)
    metadata = collections.Counter(name for r in rows for name in (r.get("metadata_removed") or []))
    residual_published = sum(int(r.get("residual_faces") or 0) for r in rows if r["status"] == "published")
    verify_quarantined = collections.Counter(
        str(r["reason"]) for r in rows if r["status"] == "quarantined" and str(r.get("reason") or "").startswith(
            ("verify:", "gate:")))
    policy = record.get("policy") or {}
    erasures = [e for e in entries if e.get("kind") == "erasure"]
    purges = [e for e in entries if e.get("kind") == "purge"]
    accuracy = summary.get("accuracy_impact") or {}

    description: list[Block] = [
        _pairs({"controller": record.get("controller") or f"[{BLANK}: controller and contact]",
                "purpose": record.get("purpose"), "legal basis": f"{record.get('legal_basis')} "
                f"({record.get('legal_basis_article')})",
                "biometric processing declared (Art. 9)": record.get("biometric_processing"),
                "Art. 9(2) condition": record.get("special_category_article") or "not applicable (not declared)",
                "input": record.get("input"), "output": record.get("output"),
                "retention": f"{record['retention_days']} days" if record.get("retention_days") else
                f"no retention period configured [{BLANK}]",
                "code": json.dumps(record.get("code") or {})}, ("item", "recorded")),
        ("p", "Operations: read each image, detect faces (MTCNN), replace every detected face, strip all "
              "metadata, re-encode (a JPEG with no face to replace keeps its compressed data when it decodes "
              "to the same pixels), verify the output (re-detection, or the detection run on those same "
              "pixels; independent metadata read; identity distance), gate each shard (Great Expectations), "
              "publish or quarantine; a Parquet manifest records every input record."),
        ("table", [["run id", "finished", "operator", "records (this run)", "checks passed"]] + [
            [str(e.get("run_id")), _fmt(e.get("finished_at")), _fmt(e.get("operator")),
             _fmt((e.get("counts") or {}).get("this_run")), _fmt(e.get("checks_passed"))] for e in runs]),
        ("blank", "categories of data subjects, recipients of the output, transfers outside the EEA"),
    ]
    necessity: list[Block] = [
        ("p", f"Purpose: {record.get('purpose')}. Legal basis: {record.get('legal_basis_article')} "
              f"({record.get('legal_basis')})."),
        ("list", [
            f"Data minimisation: every detected face is replaced ({', '.join(summary.get('methods', {})) or '-'}); "
            f"{sum(metadata.values())} metadata items removed from {len(rows)} records; no image is kept in "
            "quarantine (references and reasons only).",
            f"Objections honoured: {summary.get('excluded', 0)} records excluded before decoding; "
            f"{summary.get('erased', 0)} records erased afterwards ({len(erasures)} erasure requests in the log).",
            f"Storage limitation: retention {record.get('retention_days') or 'not set'} days; "
            f"{len(purges)} purges in the log.",
        ]),
        ("blank", "why the purpose cannot be met with less data or without personal data; for legitimate "
                  "interests, the balancing test"),
    ]
    bands = summary.get("faces_per_size_band") or {}
    risks: list[Block] = [
        ("p", "Measured on this output (report/summary.json and the manifests):"),
        _pairs({"inputs": summary.get("inputs"), "published": summary.get("published"),
                "quarantined": summary.get("quarantined"), "excluded": summary.get("excluded", 0),
                "erased": summary.get("erased", 0), "faces detected": summary.get("faces_total")},
               ("figure", "value")),
        *_verdict_blocks(summary.get("verdicts") or {}),
        ("p", "Faces per size band (shorter side, px); under 20 px faces are usually not identifiable, from "
              "40 px they are:"),
        _pairs(bands, ("band", "faces")),
        ("p", f"Residual faces re-detected on published outputs: {residual_published}; records quarantined by "
              "verification or the gate:"),
        _pairs(dict(verify_quarantined) or {"none": 0}, ("reason", "records")),
        ("p", "Identity evidence per replaced face (dlib 128-D; a face is matched when within 0.6 of its "
              "original and nearer to it than to any other original or impostor; an unmeasurable face is "
              "protected by the replacement's strength, not by a measurement):"),
        ("list", _identity_status_lines(summary.get("identity") or {}, summary.get("reidentification") or {})),
        ("table", _identity_rows(summary.get("identity") or {})),
        ("p", "Metadata removed (records carrying each item):"),
        _pairs(dict(metadata.most_common(25)) or {"none": 0}, ("metadata", "records")),
        ("p", "Quarantine reasons (never published):"),
        _pairs(summary.get("quarantine_reasons") or {"none": 0}, ("reason", "records")),
        ("p", "Accuracy impact (reference classifier): " + (
            f"top-1 agreement {_fmt((accuracy.get('top1_agreement') or {}).get('value'))} over "
            f"{_fmt(accuracy.get('images_classified'))} images" if accuracy else "not measured in this run") + "."),
        ("p", "Run checks: " + ", ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in
                                         (summary.get("checks") or {}).items())),
        ("blank", "likelihood and severity of each risk to data subjects (re-identification from missed or "
                  "small faces, from context, from the sources kept elsewhere), and the residual risk"),
    ]
    measures: list[Block] = [
        _pairs({k: policy.get(k) for k in ("method", "box_margin", "blur_sigma_factor", "detector",
                                           "detector_extra", "detector_min_face_size", "detector_score_threshold",
                                           "verify_score_threshold", "identity_check", "identity_threshold",
                                           "identity_min_face_size", "identity_reid_alpha",
                                           "identity_escalation", "gate_max_quarantine_share",
                                           "gate_max_withheld_share", "allow_low_security")},
               ("policy setting", "value")),
        ("table", [["detector", "name", "version", "weights sha256"]] + [
            [role, _fmt(d.get("name")), _fmt(d.get("version")), _fmt(d.get("weights_sha256"))]
            for role, d in (record.get("detectors") or {}).items()]),
        ("list", [
            "Fail closed: anything not decoded, detected, replaced or verified is quarantined, not published.",
            "Every output re-checked: faces re-detected (or, for an output with the very pixels the detectors "
            "searched, that detection run's faces; faces found on an output are replaced in a second pass and "
            "the output verified again), metadata re-read, identity evidence taken where the face model can "
            "read the face, and each shard's re-identification rate tested against chance.",
            f"Audit log: {chain.entries} entries, hash chain "
            f"{'intact' if chain.ok else 'BROKEN: ' + '; '.join(chain.problems)}, head {chain.head_sha256}.",
            "Exclusions are applied before decoding; erasure (`anonymize erase`) and retention "
            "(`anonymize purge`) act through the manifests' lineage and are logged.",
        ]),
        ("blank", "organisational measures (access control to sources and outputs, staff, contracts with "
                  "processors)"),
    ]
    consultation: list[Block] = [
        ("blank", "advice of the data protection officer (Art. 35(2))"),
        ("blank", "views of data subjects or their representatives (Art. 35(9)), or why not sought"),
        ("blank", "conclusion, prior consultation needed (Art. 36)?, sign-off: name, role, date"),
    ]
    return "Data protection impact assessment: material", [
        ("1. Description of the processing (Art. 35(7)(a))", description),
        ("2. Necessity and proportionality (Art. 35(7)(b))", necessity),
        ("3. Risks to the rights and freedoms of data subjects (Art. 35(7)(c))", risks),
        ("4. Measures to address the risks (Art. 35(7)(d))", measures),
        ("5. Consultation and sign-off", consultation),
    ]


def to_markdown(title: str, sections: Sequence[tuple[str, Sequence[Block]]]) -> str:
    out = [f"# {title}", "", f"Blanks marked **[{BLANK}]** are for the controller to write.", ""]
    for heading, blocks in sections:
        out += [f"## {heading}", ""]
        for kind, value in blocks:
            if kind == "p":
                out += [str(value), ""]
            elif kind == "blank":
                out += [f"**[{BLANK}: {value}]**", ""]
            elif kind == "list":
                out += [f"- {item}" for item in value] + [""]
            else:
                head, *body = value
                out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body] + [""]
    return "\n".join(out)


def to_html(title: str, sections: Sequence[tuple[str, Sequence[Block]]]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1><p>Blanks marked <mark>[{BLANK}]</mark> are for the controller.</p>"]
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for kind, value in blocks:
            if kind == "p":
                parts.append(f"<p>{html.escape(str(value))}</p>")
            elif kind == "blank":
                parts.append(f'<p class="blank"><mark>[{BLANK}: {html.escape(str(value))}]</mark></p>')
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in value) + "</ul>")
            else:
                head, *body = value
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>" + "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body) + "</table>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>DPIA material</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
            "th,td{border:1px solid #999;padding:4px 8px;text-align:left}mark{background:#ffd}</style></head><body>"
            + "".join(parts) + "</body></html>\n")


def write_dpia(output: str, storage: Storage = DEFAULT_STORAGE) -> DpiaDocument:
    """Write ``report/dpia.md`` and ``report/dpia.html``; returns their paths."""
    title, sections = build_sections(output, storage)
    fs, root = storage.filesystem(output)
    markdown, page = join(root, "report", "dpia.md"), join(root, "report", "dpia.html")
    write_atomic(fs, markdown, to_markdown(title, sections).encode())
    write_atomic(fs, page, to_html(title, sections).encode())
    return DpiaDocument(markdown, page)
