"""The anonymization job: wiring only. Each stage lives in its own module under transforms/.

read shards -> decode + normalise -> detect -> replace + strip metadata + encode -> re-detect ->
verify -> group by shard -> commit (outputs, then manifest) -> run summary.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from expectations.gate import GxShardGate
from pipelines.config import config_sha256
from pipelines.options import AnonymizeOptions
from pipelines.runners import pipeline_runner, torch_threads_for
from pipelines.settings import (
    exclusions_for,
    gate_thresholds_for,
    identity_policy_for,
    input_shards,
    parse_settings,
    replacement_policy_for,
    storage_for,
)
from transforms.accuracy import ReferenceClassifierHandler, ReferenceSampling, ReferenceSpec, sample_cutoff, sample_key
from transforms.commit import CommitShard, ShardResult, planned_outputs, withdraw_shard
from transforms.decode import DecodeAndNormalise
from transforms.detection import (
    CenterFaceDetector,
    CenterFaceSettings,
    DetectorFactory,
    DetectorStack,
    FaceDetectionHandler,
    Factory,
    FastMtcnnDetector,
    FastMtcnnSettings,
    HaarProfileDetector,
    HaarSettings,
    MtcnnDetector,
    MtcnnSettings,
    RetinaFaceDetector,
    RetinaFaceSettings,
    UnionFactory,
    YuNetDetector,
    YuNetSettings,
)
from transforms.detection.text import TextAndFacesFactory, TextDetector, TextSettings
from transforms.exclusions import Exclusions
from transforms.lease import OutputLease
from transforms.locations import check_no_overlap, check_output_writable
from transforms.manifest import RunInfo, changed_shards, committed_shards, read_shard_rows
from transforms.observability import MeterDetections, MeterRead, MeterVerified
from transforms.records import ERASED, ShardSpec
from transforms.replace_stage import ReplaceFaces
from transforms.shards import read_shard
from transforms.staging import StageOutput, remove_staging
from transforms.verification import SECOND_PASS, VerifyOutput

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobPlan:
    """What a run will do, decided before any work: the shards to process and those skipped."""

    run_id: str
    shards: tuple[ShardSpec, ...]
    skipped: tuple[ShardSpec, ...]
    run_info: RunInfo
    exclusions: Exclusions = Exclusions()
    # Committed shards the input no longer matches (shard id -> what changed): their commits are
    # withdrawn before work and they are redone.
    changed: Mapping[str, str] = field(default_factory=dict)


class InputChangedError(ValueError):
    """The input changed since shards were committed in a way a re-run cannot redo safely."""


def detector_stack_for(options: AnonymizeOptions) -> DetectorStack:
    """The run's detectors as the options ask for them, decided here only (the launcher and ``run``
    both use this): the detect detector, and the verify detector that re-checks outputs. The verify
    one is the detect one less detection-only extras (CenterFace's low-light pass, its second look
    and RetinaFace: all are built to find blurred faces, and would re-find the blurred ones the job
    just made; and CenterFace's rotated passes), so it is a subset of the detect one and may reuse its faces
    on unchanged pixels. RetinaFace stays in the verify detector only when it is the only one."""
    rotations = parse_settings(options).centerface_rotations
    detect = _detector_factory(options, options.centerface_low_light_scale, rotations, options.centerface_second_look)
    verify = _detector_factory(options, 0.0, (), 0.0, detection_only=DETECTION_ONLY_EXTRAS)
    if parse_settings(options).text:
        # Text regions are detected, replaced and searched for on the outputs like faces.
        # The verify stage's text detector also reads what it finds (text_verify_read).
        text = TextSettings(min_height=options.text_min_height, min_aspect=options.text_min_aspect,
                            threads=torch_threads_for(options, options.torch_threads),
                            device=options.detector_device)
        detect = TextAndFacesFactory(detect, Factory(TextDetector, text))
        verify = TextAndFacesFactory(verify, Factory(TextDetector, replace(text, read=options.text_verify_read)))
    return DetectorStack(detect, verify, verify_is_detect_subset=True)


DETECTION_ONLY_EXTRAS = frozenset({"retinaface"})  # left out of the verify detector (see detector_stack_for)


def _detector_factory(options: AnonymizeOptions, low_light_scale: float, rotations: tuple[int, ...],
                      second_look: float, detection_only: frozenset[str] = frozenset()) -> DetectorFactory:
    """The main detector the options ask for (none: the extras alone), unioned with the extras
    (CenterFace with ``low_light_scale``, ``rotations`` and ``second_look``) less those in ``detection_only``,
    unless leaving them out would leave no detector."""
    threads = torch_threads_for(options, options.torch_threads)
    parsed = parse_settings(options)
    thresholds = parsed.detector_thresholds
    main: DetectorFactory | None
    if options.detector == "none":
        main = None
    elif options.detector == "fast_mtcnn":
        main = Factory(FastMtcnnDetector, FastMtcnnSettings(
            min_face_size=options.detector_min_face_size, thresholds=thresholds,
            scale_factor=options.detector_scale_factor, device=options.detector_device, torch_threads=threads))
    else:
        main = Factory(MtcnnDetector, MtcnnSettings(
            min_face_size=options.detector_min_face_size, thresholds=thresholds,
            device=options.detector_device, torch_threads=threads))
    extra = parsed.detector_extra
    if main is not None or any(name not in detection_only for name in extra):
        extra = tuple(name for name in extra if name not in detection_only)
    if not extra and main is not None:
        return main
    extras: list[DetectorFactory] = []
    for name in extra:
        if name == "haar_profile":
            extras.append(Factory(HaarProfileDetector,
                                  HaarSettings(min_face_size=max(options.detector_min_face_size, 20))))
        elif name == "retinaface":
            extras.append(Factory(RetinaFaceDetector, RetinaFaceSettings(
                threshold=options.retinaface_threshold, scales=parsed.retinaface_scales,
                torch_threads=threads, device=options.detector_device)))
        elif name == "yunet":
            extras.append(Factory(YuNetDetector, YuNetSettings()))
        else:
            extras.append(Factory(CenterFaceDetector, CenterFaceSettings(
                threshold=options.centerface_threshold, torch_threads=threads, device=options.detector_device,
                low_light_scale=low_light_scale, low_light_confirm=options.centerface_low_light_confirm,
                rotations=rotations, second_look=second_look,
                second_look_max=options.centerface_second_look_max)))
    if main is None:  # detector: none, the extras alone (validate() requires one)
        return extras[0] if len(extras) == 1 else UnionFactory(extras)
    return UnionFactory([main, *extras])


def reference_spec_for(options: AnonymizeOptions) -> ReferenceSpec | None:
    """The reference classifier the options ask for, or None when ``reference_model`` is empty."""
    if not options.reference_model:
        return None
    return ReferenceSpec(options.reference_model, options.reference_weights, options.reference_device,
                         torch_threads_for(options, options.torch_threads))


def reference_run_config(options: AnonymizeOptions) -> dict[str, Any] | None:
    """What the run summary needs of the reference model (None when off); reads the weights.

    Raises:
        FileNotFoundError, ValueError: missing or mismatched weights (before any work).
    """
    spec = reference_spec_for(options)
    if spec is None:
        return None
    return {"model": spec.info(), "sample_size": options.reference_sample_size,
            "sample_seed": options.reference_sample_seed,
            "min_top1_agreement": options.gate_min_top1_agreement}


def plan_job(options: AnonymizeOptions, detectors: DetectorStack | None = None,
             run_id: str | None = None) -> JobPlan:
    """List the input shards and skip those already committed in the output (resume); the run
    info names ``detectors`` (by default those the options ask for).

    Raises:
        ValueError: the input and output overlap (naming both), an output location cannot be
            written (naming it), or the input is unusable.
    """
    storage = storage_for(options)
    check_no_overlap(options.input, options.output, storage)
    check_output_writable(options.output, storage)
    if detectors is None:
        detectors = detector_stack_for(options)
    shards = input_shards(options, storage)
    changed = changed_shards(shards, options.output, storage)
    check_redoable(options, shards, changed)
    done = committed_shards(options.output, storage) - set(changed)
    todo = tuple(s for s in shards if s.shard_id not in done)
    skipped = tuple(s for s in shards if s.shard_id in done)
    run_info = RunInfo(
        run_id=run_id or uuid.uuid4().hex,
        config_sha256=config_sha256(options),
        detector=detectors.detect.info(),
        verify_detector=detectors.verify.info(),
    )
    return JobPlan(run_info.run_id, todo, skipped, run_info, exclusions_for(options, storage), changed)


def check_redoable(options: AnonymizeOptions, shards: Sequence[ShardSpec], changed: Mapping[str, str]) -> None:
    """A changed committed shard is redone, unless that could bring back an erased record or the
    shard is not one of the input's any more (the output may be another input's): then stop.

    Raises:
        InputChangedError: naming the shards and what changed.
    """
    planned = {spec.shard_id for spec in shards}
    refused = [f"{shard_id} {why}" for shard_id, why in changed.items() if shard_id not in planned]
    refused += [f"{shard_id} {why}, and holds erased records" for shard_id, why in changed.items()
                if shard_id in planned and any(row["status"] == ERASED for row in read_shard_rows(
                    options.output, shard_id, storage_for(options)))]
    if refused:
        raise InputChangedError(
            f"input: changed since {options.output} was written: committed shard {'; '.join(refused)}. "
            "Nothing was done; write to a new output (or restore the input)")


def build_pipeline(pipeline: beam.Pipeline, options: AnonymizeOptions, plan: JobPlan,
                   detectors: DetectorStack) -> beam.PCollection[ShardResult]:
    """Add the job's stages to ``pipeline``; returns the per-shard commit results.

    ``detectors.detect`` finds the faces, ``detectors.verify`` re-checks the outputs. Verification
    reuses the detect stage's faces on outputs with the very pixels it searched only when
    ``detectors.verify_is_detect_subset``: on the same pixels it can then only find a subset of them.
    """
    storage = storage_for(options)
    max_pixels = options.max_image_pixels
    share = options.detector_share_across_processes
    detect = FaceDetectionHandler(detectors.detect, options.detector_batch_size, max_pixels,
                                  share_across_processes=share)
    verify = FaceDetectionHandler(detectors.verify, options.detector_batch_size,
                                  max_pixels,
                                  mode="verify",
                                  verify_threshold=options.verify_score_threshold,
                                  share_across_processes=share,
                                  reuse_same_pixels=detectors.verify_is_detect_subset,
                                  scope=options.verify_scope if detectors.verify_is_detect_subset else "full",
                                  # The first and the second pass's verify steps: one detector.
                                  shared_key=f"verify-{plan.run_id}")
    records = (
        pipeline
        | "ListShards" >> beam.Create(list(plan.shards))
        | "SpreadShards" >> beam.Reshuffle()
        | "ReadShards" >> beam.FlatMap(read_shard, storage)
        | "MeterRead" >> beam.ParDo(MeterRead())
    )
    read_counts = (
        records
        | "KeyForCount" >> beam.Map(lambda r: (r.shard_id, 1))
        | "CountRead" >> beam.CombinePerKey(sum)
    )
    # Exclusions: listed records leave here without bytes or sidecars and skip every stage to the commit.
    marked = records | "Exclude" >> beam.Map(lambda r, listed: listed.apply(r), plan.exclusions)
    excluded = marked | "Excluded" >> beam.Filter(lambda r: r.is_excluded)
    records = marked | "Included" >> beam.Filter(lambda r: not r.is_excluded)
    # Accuracy impact: Replace keeps the reference views of sampled records, Classify runs the model.
    reference = reference_spec_for(options)
    sampling = ReferenceSampling(options.reference_sample_size, options.reference_sample_seed) \
        if reference is not None else None
    replace_args = (replacement_policy_for(options), max_pixels, options.jpeg_quality, sampling)
    replace_kwargs: dict[str, Any] = dict(
        identity_check=options.identity_check, identity=identity_policy_for(options), storage=storage,
        identity_device=options.detector_device, keep_unchanged_jpeg=options.keep_unchanged_jpeg)
    # The first pass keeps each source for a second one: faces verification finds on an output
    # (revealed once a neighbour is blurred, or missed the first time) are replaced too, and that
    # output is verified again; a face found then quarantines the record.
    first = ReplaceFaces(*replace_args, keep_source=True, **replace_kwargs)
    second = ReplaceFaces(*replace_args, **replace_kwargs)
    cutoff = None
    if sampling is not None and sampling.sample_size > 0:
        cutoff = beam.pvalue.AsSingleton(
            records
            | "SampleKeys" >> beam.Map(lambda r, seed: sample_key(r.record_id, seed), sampling.seed)
            | "SmallestKeys" >> beam.combiners.Top.Smallest(sampling.sample_size)
            | "SampleCutoff" >> beam.Map(sample_cutoff)
        )

    def replace_step(stage: ReplaceFaces) -> beam.ParDo:
        return beam.ParDo(stage, sample_cutoff=cutoff) if cutoff is not None else beam.ParDo(stage)

    # Both verification steps run the one verify detector: in a worker process they share it
    # (the handler's ``shared_key``), and with ``share_across_processes`` one model serves both.
    verify_model = f"verify-detector-{plan.run_id}"
    checked = (
        records
        | "Decode" >> beam.ParDo(DecodeAndNormalise(max_pixels, options.min_image_side))
        | "Detect" >> RunInference(detect)
        | "MeterDetections" >> beam.ParDo(MeterDetections())
        | "Replace" >> replace_step(first)
        | "Redetect" >> RunInference(verify, model_identifier=verify_model)
        | "Verify" >> beam.ParDo(VerifyOutput(max_pixels, options.verify_score_threshold, options.identity_threshold,
                                              second_pass=True)).with_outputs(SECOND_PASS, main="verified")
    )
    again = (
        checked[SECOND_PASS]
        | "ReplaceAgain" >> replace_step(second)
        | "RedetectAgain" >> RunInference(verify, model_identifier=verify_model)
        | "VerifyAgain" >> beam.ParDo(VerifyOutput(max_pixels, options.verify_score_threshold,
                                                   options.identity_threshold))
    )
    verified = (checked.verified, again) | "BothPasses" >> beam.Flatten()
    if reference is not None:
        verified = verified | "Classify" >> RunInference(
            ReferenceClassifierHandler(reference, options.reference_batch_size, options.label_field))
    processed = (
        verified
        | "MeterVerified" >> beam.ParDo(MeterVerified())
        | "Stage" >> beam.ParDo(StageOutput(options.output, plan.run_id, storage))
    )
    processed = (
        (processed, excluded)
        | "WithExcluded" >> beam.Flatten()
        | "KeyByShard" >> beam.Map(lambda r: (r.shard_id, r))
    )
    return (
        {"records": processed, "read_count": read_counts}
        | "GroupShard" >> beam.CoGroupByKey()
        | "Commit" >> beam.ParDo(CommitShard(
            {s.shard_id: s for s in plan.shards}, options.output, plan.run_info, storage,
            gate=GxShardGate(gate_thresholds_for(options), options.output, plan.run_id, storage)))
    )


def _stack_of(options: AnonymizeOptions, detect: DetectorFactory | None,
              verify: DetectorFactory | None) -> DetectorStack:
    """The configured stack, with the detectors a caller gave instead of the configured ones; a
    given detector is not known to be a subset of another, unless it verifies its own detections."""
    if detect is not None:
        return DetectorStack.of(detect, verify)
    configured = detector_stack_for(options)
    return configured if verify is None else DetectorStack(configured.detect, verify)


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None,
        detector_factory: DetectorFactory | None = None,
        options: AnonymizeOptions | None = None,
        verify_factory: DetectorFactory | None = None,
        plan: JobPlan | None = None,
        detectors: DetectorStack | None = None,
        lease: OutputLease | None = None) -> tuple[beam.runners.runner.PipelineResult | None, JobPlan]:
    """Run the job to completion.

    Args:
        argv: pipeline flags (used when ``options`` is not given).
        test_pipeline: a pipeline to build on instead of a new one (tests).
        detector_factory: a detector to use instead of the configured one (tests, benchmarks).
        verify_factory: the detector that re-checks outputs instead of the configured one (tests);
            with ``detector_factory`` alone, that one re-checks.
        options: already-validated options.
        plan: an already-made plan (the launcher makes it to fail early on a bad input).
        detectors: the run's detectors (the launcher's ``detector_stack_for``); by default those
            the options ask for, or the stack the two factories above make.
        lease: the output's lease, already held for ``plan.run_id`` (default: taken here).

    Returns:
        The pipeline result (``None`` when every shard was already committed) and the plan.
    """
    if options is None:
        options = PipelineOptions(list(argv or [])).view_as(AnonymizeOptions)
    if detectors is None:
        detectors = _stack_of(options, detector_factory, verify_factory)
    elif detector_factory is not None or verify_factory is not None:
        raise ValueError("give detectors, or detector_factory/verify_factory, not both")
    if plan is None:
        plan = plan_job(options, detectors)
    LOG.info("run %s: %d shards to process, %d already committed", plan.run_id,
             len(plan.shards), len(plan.skipped))
    storage = storage_for(options)
    own_lease = lease is None
    if lease is None:
        lease = OutputLease(options.output, storage, plan.run_id, options.lease_seconds)
        lease.acquire()
    try:
        # Under the lease no other run is live: what earlier runs left is a killed run's.
        remove_staging(options.output, storage)
        if not plan.shards:
            return None, plan
        keep = planned_outputs(options.output, plan.shards + plan.skipped, storage)
        for shard_id, why in plan.changed.items():
            LOG.warning("shard %s %s: its commit is withdrawn and it is redone", shard_id, why)
            withdraw_shard(options.output, shard_id, keep, storage)
        pipeline = test_pipeline or beam.Pipeline(runner=pipeline_runner(options), options=options)
        build_pipeline(pipeline, options, plan, detectors)
        result = pipeline.run()
        result.wait_until_finish()
        remove_staging(options.output, storage, plan.run_id)  # this run's own staging only
    finally:
        if own_lease:
            lease.release()
    return result, plan
