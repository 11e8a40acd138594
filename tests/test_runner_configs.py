"""conf/runner/*.yaml make valid Beam options, and the job's graph survives the portable proto.

Flink's job server and Dataflow cannot be reached from the test machine: what is checked here is
everything up to the submission (every flag known to Beam, the values each runner reads, the
SDK environment the workers get, the graph pickled into and rebuilt from its runner API proto).
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.direct.direct_runner import DirectRunner
from apache_beam.transforms import environments

from pipelines.anonymize import build_pipeline, detector_stack_for, plan_job
from pipelines.config import ConfigError, build_options, config_sha256
from pipelines.options import SPECS_BY_NAME
from tests.datasets import write_tar_shards

ROOT = Path(__file__).resolve().parents[1]
RUNNERS = ("direct", "portable", "flink", "dataflow")
BEAM_NAMES = set(PipelineOptions([]).get_all_options(retain_unknown_options=False))


def _options(runner: str, input_uri: str, output: str, *overrides: str) -> PipelineOptions:
    settings = [f"input={input_uri}", f"output={output}", "identity_check=false", *overrides]
    if "purpose" in SPECS_BY_NAME:
        settings += ["purpose=runner config test", "legal_basis=legitimate_interests"]
    options, _ = build_options([str(ROOT / "conf" / "base.yaml"), str(ROOT / "conf" / "runner" / f"{runner}.yaml")],
                               settings)
    return options


@pytest.fixture(scope="module")
def tars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("confs")
    write_tar_shards(folder / "in", shards=2, per_shard=1)
    return folder


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_flag_is_known_to_beam(runner: str) -> None:
    options = _options(runner, "gs://bucket/in/*.tar", "gs://bucket/out")
    every = options.get_all_options(retain_unknown_options=True)
    assert set(every) - BEAM_NAMES - set(SPECS_BY_NAME) == set()
    assert options.view_as(StandardOptions).runner == {
        "direct": "DirectRunner", "portable": "PortableRunner", "flink": "FlinkRunner",
        "dataflow": "DataflowRunner"}[runner]


def test_flink_and_portable_values_reach_beam() -> None:
    flink = _options("flink", "s3://bucket/in/*.tar", "s3://bucket/out")
    assert flink.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
    assert flink.view_as(FlinkRunnerOptions).parallelism == 8
    assert flink.view_as(FlinkRunnerOptions).flink_version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    environment = environments.Environment.from_options(flink.view_as(PortableOptions))
    assert isinstance(environment, environments.DockerEnvironment)
    assert environment.container_image.endswith("worker:0.1.0-cpu")
    portable = _options("portable", "s3://bucket/in/*.tar", "s3://bucket/out")
    assert portable.view_as(PortableOptions).job_endpoint == "localhost:8099"
    external = environments.Environment.from_options(portable.view_as(PortableOptions))
    assert isinstance(external, environments.ExternalEnvironment) and external.url == "localhost:50000"


def test_dataflow_values_reach_beam() -> None:
    options = _options("dataflow", "gs://bucket/in/*.tar", "gs://bucket/out")
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region) == ("my-gcp-project", "europe-west4")
    assert cloud.temp_location.startswith("gs://") and cloud.staging_location.startswith("gs://")
    worker = options.view_as(WorkerOptions)
    assert worker.machine_type == "n2-standard-4" and worker.max_num_workers == 50
    assert worker.sdk_container_image.endswith("worker:0.1.0-cpu")
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    gpu = _options("dataflow", "gs://b/in/*.tar", "gs://b/out", "machine_type=n1-standard-8",
                   "dataflow_service_options=[worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver]",
                   "detector_device=cuda", "detector_share_across_processes=true")
    assert gpu.view_as(GoogleCloudOptions).dataflow_service_options == [
        "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]


def test_dataflow_refuses_local_paths(tars: Path) -> None:
    with pytest.raises(ConfigError, match="^output: .* local path"):
        _options("dataflow", "gs://bucket/in/*.tar", str(tars / "out"))
    with pytest.raises(ConfigError, match="^input: .* local path"):
        _options("dataflow", str(tars / "in" / "*.tar"), "gs://bucket/out")


def test_runner_flags_do_not_change_the_config_hash() -> None:
    hashes = {config_sha256(_options(runner, "gs://b/in/*.tar", "gs://b/out", "detector_share_across_processes=true"))
              for runner in RUNNERS}
    assert len(hashes) == 1
    assert config_sha256(_options("direct", "gs://b/in/*.tar", "gs://b/out", "method=solid")) not in hashes


@pytest.mark.parametrize("runner", ["portable", "flink", "dataflow"])
def test_graph_round_trips_through_the_portable_proto(runner: str, tars: Path) -> None:
    local = _options("direct", str(tars / "in" / "*.tar"), str(tars / "out"))
    plan = plan_job(local)
    options = _options(runner, "gs://bucket/in/*.tar", "gs://bucket/out", "reference_model=mobilenet_v2",
                       "reference_sample_size=4")
    pipeline = beam.Pipeline(runner=DirectRunner(), options=options)  # built, never submitted
    build_pipeline(pipeline, options, plan, detector_stack_for(options))
    proto = pipeline.to_runner_api()
    serialized = proto.SerializeToString()  # what a job service receives
    rebuilt = beam.Pipeline.from_runner_api(beam_runner_api_pb2.Pipeline.FromString(serialized),
                                            DirectRunner(), options)
    again = rebuilt.to_runner_api()
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert names == {t.unique_name for t in again.components.transforms.values()}
    assert {"Detect", "Redetect", "Commit", "Stage", "MeterRead", "Classify"} <= names
    # Every DoFn was pickled into the proto and unpickled by from_runner_api: the stage classes are back.
    fns = set()
    for transform in rebuilt.transforms_stack[0].parts:
        stack = [transform]
        while stack:
            node = stack.pop()
            stack.extend(node.parts)
            fn = getattr(node.transform, "fn", None)
            if fn is not None:
                fns.add(type(fn).__name__)
    assert {"CommitShard", "StageOutput", "DecodeAndNormalise", "VerifyOutput", "MeterRead"} <= fns
    par_dos = [t for t in proto.components.transforms.values() if t.spec.urn == common_urns.primitives.PAR_DO.urn]
    assert len(par_dos) >= 10


def test_dataflow_translates_the_job_without_submitting(tars: Path) -> None:
    """DataflowRunner's dry run: the full Dataflow job (graph, environment, service options), not sent."""
    apiclient = pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")  # the gcp extra
    plan = plan_job(_options("direct", str(tars / "in" / "*.tar"), str(tars / "out")))
    options, _ = build_options(
        [str(ROOT / "conf" / "base.yaml"), str(ROOT / "conf" / "runner" / "dataflow.yaml")],
        ["input=gs://bucket/in/*.tar", "output=gs://bucket/out", "identity_check=false", "detector_device=cuda",
         "dataflow_service_options=[worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver]",
         *(["purpose=runner config test", "legal_basis=legitimate_interests"] if "purpose" in SPECS_BY_NAME else [])],
        ["--dry_run=True", "--no_auth", "--sdk_location=container"])
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options, plan, detector_stack_for(options))
    job = pipeline.run().job  # type: ignore[attr-defined]
    images = {env.payload for env in job.proto_pipeline.components.environments.values()
              if env.urn == common_urns.environments.DOCKER.urn}
    assert len(images) == 1 and next(iter(images)).endswith(b"worker:0.1.0-cpu")
    # What the submission would attach to the job (apiclient builds it the same way after staging).
    environment = apiclient.Environment([], job.options, "8", "gs://bucket/staging/pipeline.pb",
                                        job.proto_pipeline).proto
    assert "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver" in environment.service_options
    pool = environment.worker_pools[0]
    assert (pool.machine_type, pool.num_workers, pool.disk_size_gb) == ("n2-standard-4", 2, 50)
    assert pool.sdk_harness_container_images[0].container_image.endswith("worker:0.1.0-cpu")
    assert job.proto.name == "dataset-anonymizer"
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"Detect", "Commit", "MeterRead"} <= names


def test_dataflow_refuses_local_model_files(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="^reference_weights: .* local path"):
        _options("dataflow", "gs://bucket/in/*.tar", "gs://bucket/out", "reference_model=mobilenet_v2",
                 f"reference_weights={weights}")
