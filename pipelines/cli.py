"""The ``anonymize`` command line: ``anonymize run --conf A.yaml --conf B.yaml --set k=v``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from pipelines.anonymize import detector_factory_for, plan_job, reference_run_config, run
from pipelines.config import ConfigError, build_options, job_settings
from transforms.manifest import read_manifests
from transforms.summary import summarise, write_summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anonymize", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the anonymization job")
    run_cmd.add_argument("--conf", action="append", default=[],
                         help="YAML config; repeat to merge left to right")
    run_cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override one setting; repeatable")
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
    run(options=options, detector_factory=factory, plan=plan)
    elapsed = time.monotonic() - started
    manifest = read_manifests(options.output, options.s3_endpoint)
    summary = summarise(manifest, plan.shards + plan.skipped, reference)
    summary["settings"] = job_settings(options) | {"s3_endpoint": None}
    summary["detector"] = dict(plan.run_info.detector)
    summary["wall_seconds"] = round(elapsed, 2)
    summary["shards_skipped_as_committed"] = len(plan.skipped)
    folder = write_summary(summary, options.output, options.s3_endpoint)
    print(f"run {plan.run_id}: {summary['inputs']} records, {summary['published']} published, "
          f"{summary['quarantined']} quarantined in {elapsed:.1f} s")
    print(f"outputs: {options.output}/data  manifest: {options.output}/manifest  "
          f"report: {folder}/summary.html")
    if not summary["passed"]:
        failed = [name for name, ok in summary["checks"].items() if not ok]
        print(f"anonymize: run checks FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anonymize`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args, rest = _parser().parse_known_args(argv)
    if args.command == "run":
        return cmd_run(args.conf, args.set, rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
