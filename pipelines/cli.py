"""The ``anonymize`` command line: ``anonymize run --conf A.yaml --conf B.yaml --set k=v``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from expectations.report import ReportResult, build_report
from expectations.suites import GateThresholds
from pipelines.anonymize import detector_factory_for, plan_job, reference_run_config, run
from pipelines.config import ConfigError, build_options, job_settings
from pipelines.progress import ProgressBar
from transforms.manifest import read_manifests
from transforms.observability import format_metrics, metrics_summary
from transforms.summary import summarise, write_summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anonymize", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the anonymization job")
    run_cmd.add_argument("--conf", action="append", default=[],
                         help="YAML config; repeat to merge left to right")
    run_cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override one setting; repeatable")
    report_cmd = commands.add_parser("report", help="rebuild the validation report of a finished run")
    report_cmd.add_argument("output", help="the run's output prefix (local path or fsspec URL)")
    report_cmd.add_argument("--s3-endpoint", default="", help="endpoint of an S3-compatible store")
    return parser


def cmd_run(conf: Sequence[str], overrides: Sequence[str], beam_argv: Sequence[str]) -> int:
    """Validate the config, run the job, check the invariants and write the run summary."""
    try:
        options, _ = build_options(conf, overrides, beam_argv)
        factory = detector_factory_for(options)
        plan = plan_job(options, detector_info=factory.info())  # fails early on a bad input
        reference = reference_run_config(options)  # fails early on missing reference weights
    except (ConfigError, FileNotFoundError, PermissionError, ValueError) as error:
        print(f"anonymize: config error: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with ProgressBar(options.output, options.s3_endpoint, plan.run_id, len(plan.shards) + len(plan.skipped),
                     len(plan.skipped)):
        result, _ = run(options=options, detector_factory=factory, plan=plan)
    elapsed = time.monotonic() - started
    manifest = read_manifests(options.output, options.s3_endpoint)
    summary = summarise(manifest, plan.shards + plan.skipped, reference)
    summary["settings"] = job_settings(options) | {"s3_endpoint": None}
    summary["detector"] = dict(plan.run_info.detector)
    summary["wall_seconds"] = round(elapsed, 2)
    summary["shards_skipped_as_committed"] = len(plan.skipped)
    summary["metrics"] = metrics_summary(result) if result is not None else {}
    folder = write_summary(summary, options.output, options.s3_endpoint)
    print(f"run {plan.run_id}: {summary['inputs']} records, {summary['published']} published, "
          f"{summary['quarantined']} quarantined in {elapsed:.1f} s")
    for line in format_metrics(summary["metrics"]) if result is not None else []:
        print(line)
    report = build_report(options.output, options.s3_endpoint, plan.shards + plan.skipped, summary,
                          GateThresholds.from_options(options))
    print(f"outputs: {options.output}/data  manifest: {options.output}/manifest  "
          f"report: {report.index} (summary: {folder}/summary.html)")
    if not summary["passed"]:
        failed = [name for name, ok in summary["checks"].items() if not ok]
        print(f"anonymize: run checks FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return _report_status(report)


def _report_status(report: ReportResult) -> int:
    """0 when every shard gate, run expectation and run check passed; else 1, saying what failed."""
    if report.failed_shards:
        print(f"anonymize: shards FAILED the gate (quarantined): {', '.join(report.failed_shards)}",
              file=sys.stderr)
    if report.run_failed or report.summary_failed:
        print(f"anonymize: run expectations FAILED: {', '.join(report.run_failed + report.summary_failed)}",
              file=sys.stderr)
    return 0 if report.passed else 1


def cmd_report(output: str, s3_endpoint: str = "") -> int:
    """Rebuild ``<output>/report/`` from the run's manifests and kept validation results."""
    try:
        report = build_report(output, s3_endpoint)
    except (FileNotFoundError, PermissionError, ValueError) as error:
        print(f"anonymize: cannot build the report of {output}: {error}", file=sys.stderr)
        return 2
    print(f"report: {report.index} ({'PASSED' if report.passed else 'FAILED'})")
    return _report_status(report)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anonymize`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, rest = _parser().parse_known_args(argv)
    if args.command == "run":
        return cmd_run(args.conf, args.set, rest)
    if args.command == "report":
        return cmd_report(args.output, args.s3_endpoint)
    return 2


if __name__ == "__main__":
    sys.exit(main())
