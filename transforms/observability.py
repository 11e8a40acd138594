"""Beam metrics of the job: counters and distributions every runner shows in its UI.

Namespace ``anonymize``: images and bytes read, faces found, records published and quarantined
(in total and per reason), bytes of verified outputs. RunInference adds its own per model, in the
``anonymize_detect`` / ``anonymize_verify`` namespaces (batch latency, batch size, model loads).
``metrics_summary`` reads them back from a finished ``PipelineResult`` for the launcher.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

from transforms.records import Record

NAMESPACE = "anonymize"
INFERENCE_NAMESPACES = ("anonymize_detect", "anonymize_verify")
REASON_PREFIX = "quarantined:"
MAX_REASON_LENGTH = 80
# Distributions of the time each stage spends, in microseconds: ``stage_us:<stage>`` (one update
# per record, per batch for detectors, per shard for the gate and the commit).
STAGE_PREFIX = "stage_us:"


@contextmanager
def timed(stage: str, count: int = 1) -> Iterator[None]:
    """Add the time spent in the block to the distribution ``stage_us:<stage>`` (spread over
    ``count`` items: one update per item, each of the block's time divided by ``count``)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        micros = int(1e6 * (time.perf_counter() - started) / max(1, count))
        distribution = Metrics.distribution(NAMESPACE, STAGE_PREFIX + stage)
        for _ in range(max(1, count)):
            distribution.update(micros)


def stage_times(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per stage (``timed``), from ``metrics_summary``'s result: updates, total seconds and mean ms."""
    out: dict[str, dict[str, float]] = {}
    for key, dist in metrics.get("distributions", {}).items():
        name = key.split("/", 1)[-1]
        if key.startswith(NAMESPACE + "/") and name.startswith(STAGE_PREFIX):
            out[name[len(STAGE_PREFIX):]] = {"count": dist["count"], "seconds": dist["sum"] / 1e6,
                                             "mean_ms": dist["mean"] / 1000}
    return out


class MeterImages(beam.DoFn):
    """Counts the records that reach a point of the job (``images_<point>``) and their bytes
    (``bytes_<point>``; with ``sizes``, also the distribution of that name); passes each on unchanged.

    Args:
        point: where the meter stands (``read``, ``verified``).
        quarantined_too: count quarantined records too (else only those still going on).
    """

    def __init__(self, point: str, quarantined_too: bool = False, sizes: str = "") -> None:
        self._images = Metrics.counter(NAMESPACE, f"images_{point}")
        self._bytes = Metrics.counter(NAMESPACE, f"bytes_{point}")
        self._sizes = Metrics.distribution(NAMESPACE, sizes) if sizes else None
        self._quarantined_too = quarantined_too

    def process(self, record: Record) -> Iterator[Record]:
        if self._quarantined_too or not record.is_quarantined:
            self._images.inc()
            self._bytes.inc(len(record.data))
            if self._sizes is not None:
                self._sizes.update(len(record.data))
        yield record


class MeterRead(MeterImages):
    """Counts the records read and their bytes (``image_bytes``: their sizes)."""

    def __init__(self) -> None:
        super().__init__("read", quarantined_too=True, sizes="image_bytes")


class MeterDetections(beam.DoFn):
    """Counts the faces the detector found (total, per image, images with faces)."""

    def __init__(self) -> None:
        self._faces = Metrics.counter(NAMESPACE, "faces_found")
        self._with_faces = Metrics.counter(NAMESPACE, "images_with_faces")
        self._per_image = Metrics.distribution(NAMESPACE, "faces_per_image")

    def process(self, record: Record) -> Iterator[Record]:
        if not record.is_quarantined:
            faces = len(record.faces)
            self._faces.inc(faces)
            self._per_image.update(faces)
            if faces:
                self._with_faces.inc()
        yield record


class MeterVerified(MeterImages):
    """Counts the records that passed verification and the bytes of their anonymized outputs."""

    def __init__(self) -> None:
        super().__init__("verified")


def reason_metric(reason: str | None) -> str:
    """The counter name of a quarantine reason (bounded length, never empty)."""
    return REASON_PREFIX + ((reason or "unknown")[:MAX_REASON_LENGTH])


def meter_commit(rows: Iterable[Mapping[str, Any]]) -> None:
    """Count one committed shard's manifest rows per status (published, quarantined and why, ...)."""
    statuses: dict[str, int] = {"published": 0, "quarantined": 0}
    for row in rows:
        status = str(row.get("status"))
        statuses[status] = statuses.get(status, 0) + 1
        if status == "quarantined":
            Metrics.counter(NAMESPACE, reason_metric(row.get("reason"))).inc()
    for status, count in statuses.items():
        Metrics.counter(NAMESPACE, f"images_{status}").inc(count)
    Metrics.counter(NAMESPACE, "shards_committed").inc()


def _value(result: Any) -> Any:
    """A metric's committed value, or its attempted one where the runner has no committed values."""
    try:
        value = result.committed
    except Exception:  # noqa: BLE001 - runners without committed metrics raise here
        value = None
    return value if value is not None else result.attempted


def metrics_summary(result: Any) -> dict[str, Any]:
    """The job's counters and distributions from a finished ``PipelineResult``.

    Returns:
        ``{"counters": {name: int}, "quarantine_reasons": {reason: int},
        "distributions": {"<namespace>/<name>": {"count", "sum", "min", "max", "mean"}}}``;
        empty sections when the runner reports no metrics.
    """
    counters: dict[str, int] = {}
    reasons: dict[str, int] = {}
    distributions: dict[str, dict[str, float]] = {}
    for namespace in (NAMESPACE, *INFERENCE_NAMESPACES):
        queried = result.metrics().query(MetricsFilter().with_namespace(namespace))
        for counter in queried.get("counters", []):
            name = counter.key.metric.name
            value = int(_value(counter) or 0)
            if namespace != NAMESPACE:
                name = f"{namespace}/{name}"
            if name.startswith(REASON_PREFIX):
                reasons[name[len(REASON_PREFIX):]] = reasons.get(name[len(REASON_PREFIX):], 0) + value
            else:
                counters[name] = counters.get(name, 0) + value
        for dist in queried.get("distributions", []):
            data = _value(dist)
            if data is None or not data.count:
                continue
            key = f"{namespace}/{dist.key.metric.name}"
            previous = distributions.get(key)
            count = data.count + (previous["count"] if previous else 0)
            total = data.sum + (previous["sum"] if previous else 0)
            distributions[key] = {
                "count": count, "sum": total,
                "min": min(data.min, previous["min"]) if previous else data.min,
                "max": max(data.max, previous["max"]) if previous else data.max,
                "mean": total / count,
            }
    return {"counters": dict(sorted(counters.items())), "quarantine_reasons": dict(sorted(reasons.items())),
            "distributions": dict(sorted(distributions.items()))}


def format_metrics(metrics: Mapping[str, Any]) -> list[str]:
    """Readable lines of ``metrics_summary``'s result, for the launcher's end-of-run summary."""
    counters = metrics.get("counters", {})
    if not counters and not metrics.get("distributions"):
        return ["metrics: the runner reported none"]
    lines = ["metrics: " + ", ".join(f"{name} {value}" for name, value in counters.items())]
    reasons = metrics.get("quarantine_reasons", {})
    if reasons:
        lines.append("quarantined by reason: " + ", ".join(f"{name} {value}" for name, value in reasons.items()))
    for key in ("anonymize_detect/inference_batch_latency_micro_secs",
                "anonymize_verify/inference_batch_latency_micro_secs"):
        dist = metrics.get("distributions", {}).get(key)
        if dist:
            stage = key.split("/")[0].removeprefix("anonymize_")
            lines.append(f"{stage} latency per batch: mean {dist['mean'] / 1000:.1f} ms, min {dist['min'] / 1000:.1f} "
                         f"ms, max {dist['max'] / 1000:.1f} ms over {dist['count']} batches")
    stages = stage_times(metrics)
    if stages:
        lines.append("time per item by stage (mean ms, updates): " + ", ".join(
            f"{name} {figures['mean_ms']:.1f} ({int(figures['count'])})" for name, figures in stages.items()))
    loads = metrics.get("distributions", {}).get("anonymize_detect/load_model_latency_milli_secs")
    if loads:
        lines.append(f"detector loads: {loads['count']} (mean {loads['mean'] / 1000:.1f} s)")
    return lines
