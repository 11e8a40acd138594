"""The ``anonymize`` command line: ``anonymize run --conf A.yaml --conf B.yaml --set k=v``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from expectations.report import ReportResult, build_report
from expectations.suites import WITHHELD_EXPECTATION
from expectations.verdict import verdict_lines
from pipelines.accountability import record_run_finished, record_run_started, recorded_settings
from pipelines.anonymize import JobPlan, detector_stack_for, plan_job, reference_run_config, run
from pipelines.config import build_options
from pipelines.dpia import write_dpia
from pipelines.erase import erase, parse_request_file, purge
from pipelines.options import AnonymizeOptions
from pipelines.progress import ProgressBar
from pipelines.settings import gate_thresholds_for, storage_for
from transforms.audit import verify_chain
from transforms.detection import DetectorStack
from transforms.exclusions import read_identifier_file
from transforms.lease import LeaseHeldError, OutputLease
from transforms.manifest import read_manifests
from transforms.observability import format_metrics, metrics_summary
from transforms.storage import DEFAULT_STORAGE, Storage
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
    _add_accountability_commands(commands)
    _add_review_command(commands)
    return parser


def _add_review_command(commands: Any) -> None:
    """``review``: the steward's review page (pipelines/review.py)."""
    review_cmd = commands.add_parser("review", help="serve a review page for a run's output on 127.0.0.1")
    review_cmd.add_argument("output", help="the run's output prefix (local path or fsspec URL)")
    review_cmd.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    review_cmd.add_argument("--seed", type=int, default=None, help="seed of the random audit sample (default: "
                            "resume the latest sample, or draw one with a random seed; recorded either way)")
    review_cmd.add_argument("--confidence", type=float, default=0.95, help="confidence of the missed-face bound")
    review_cmd.add_argument("--margin", type=float, default=0.05,
                            help="the bound to reach if no miss is found: sets the sample size (59 at 0.95/0.05)")
    review_cmd.add_argument("--new-sample", action="store_true", help="draw a new sample even if one is open")
    review_cmd.add_argument("--allow-originals", action="store_true",
                            help="let the reviewer ask for an original image (each showing is recorded)")
    review_cmd.add_argument("--s3-endpoint", default="", help="endpoint of an S3-compatible store")
    review_cmd.add_argument("--operator", default="", help="who starts the review (default: the operating-system user)")


def _add_accountability_commands(commands: Any) -> None:
    """``audit verify``, ``erase``, ``purge`` and ``dpia`` (pipelines/erase.py, pipelines/dpia.py)."""
    audit_cmd = commands.add_parser("audit", help="check the output's audit log (record of processing)")
    audit_cmd.add_argument("action", choices=("verify",))
    erase_cmd = commands.add_parser("erase", help="erase records from an output through the manifests' lineage")
    erase_cmd.add_argument("--source-uri", action="append", default=[], help="a source URI (repeatable)")
    erase_cmd.add_argument("--subject-id", action="append", default=[], help="a subject id (repeatable)")
    erase_cmd.add_argument("--from-file", default="", help="file of 'source:URI' / 'subject:ID' lines")
    purge_cmd = commands.add_parser("purge", help="remove the outputs of runs whose retention period has passed")
    purge_cmd.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                           help="also remove runs finished more than DAYS ago")
    dpia_cmd = commands.add_parser("dpia", help="write DPIA material (Art. 35) as report/dpia.md and .html")
    for cmd in (audit_cmd, erase_cmd, purge_cmd, dpia_cmd):
        cmd.add_argument("output", help="the output prefix (local path or fsspec URL)")
        cmd.add_argument("--s3-endpoint", default="", help="endpoint of an S3-compatible store")
        cmd.add_argument("--operator", default="", help="who runs this (default: the operating-system user)")


T = TypeVar("T")
# What a command reports as bad input, exit status 2: a missing or unreadable file or location, a
# bad value (config errors included), an output in use by another run.
BAD_INPUT = (FileNotFoundError, PermissionError, ValueError, LeaseHeldError)


def _attempt(label: str, action: Callable[[], T]) -> T | None:
    """``action()``; on bad input, None after printing ``anonymize: <label>: <error>``."""
    try:
        return action()
    except BAD_INPUT as error:
        print(f"anonymize: {label}: {error}", file=sys.stderr)
        return None


def cmd_audit_verify(output: str, storage: Storage = DEFAULT_STORAGE) -> int:
    """0 when the audit log's hash chain is intact; 1, naming each broken entry, when not."""
    chain = verify_chain(output, storage)
    if not chain.entries:
        print(f"anonymize: no audit log at {output}/audit", file=sys.stderr)
        return 1
    for problem in chain.problems:
        print(f"anonymize: audit: {problem}", file=sys.stderr)
    print(f"audit log {output}/audit: {chain.entries} entries, {'intact' if chain.ok else 'BROKEN'}; "
          f"head sha256 {chain.head_sha256} (keep it elsewhere to detect a rewritten tail)")
    return 0 if chain.ok else 1


def cmd_erase(output: str, sources: Sequence[str], subjects: Sequence[str], from_file: str, storage: Storage,
              operator: str) -> int:
    """Erase, verify and log; 0 when nothing of the request remains, 1 when something does, 2 on bad input."""
    def request() -> Any:
        more_sources, more_subjects = parse_request_file(read_identifier_file(from_file, storage)) \
            if from_file else ([], [])
        return erase(output, [*sources, *more_sources], [*subjects, *more_subjects], storage, operator)

    result = _attempt("erase", request)
    if result is None:
        return 2
    for problem in result.problems:
        print(f"anonymize: erase: {problem}", file=sys.stderr)
    print(f"erasure {result.erasure_id}: {result.erased} records erased, {result.already_erased} already erased, "
          f"{len(result.shards)} shards; verified: {'yes' if result.verified else 'NO'}; "
          f"audit entry {result.audit_seq}")
    return 0 if result.verified else 1


def cmd_purge(output: str, older_than: float | None, storage: Storage, operator: str) -> int:
    """Remove expired runs' shards and report what went."""
    report = _attempt("purge", lambda: purge(output, storage, older_than, operator))
    if report is None:
        return 2
    for run_id, why in report["runs_due"].items():
        print(f"run {run_id}: {why}")
    print(f"purged {len(report['shards_removed'])} shards ({report['records_removed']} records, "
          f"{report['data_files_removed']} data files); {report['shards_left']} shards left; "
          f"audit entry {report['audit_seq']}")
    return 0


def cmd_dpia(output: str, storage: Storage) -> int:
    """Write the DPIA material of an output."""
    document = _attempt("dpia", lambda: write_dpia(output, storage))
    if document is None:
        return 2
    print(f"DPIA material: {document.markdown} and {document.html}")
    return 0


def cmd_run(conf: Sequence[str], overrides: Sequence[str], beam_argv: Sequence[str]) -> int:
    """Validate the config, run the job, check the invariants and write the run summary."""
    def prepare() -> tuple[AnonymizeOptions, DetectorStack, JobPlan, dict[str, Any] | None]:
        options, _ = build_options(conf, overrides, beam_argv)
        stack = detector_stack_for(options)  # the detect and verify detectors, decided once
        plan = plan_job(options, stack)  # fails early on a bad input
        return options, stack, plan, reference_run_config(options)  # fails early on missing reference weights

    prepared = _attempt("config error", prepare)
    if prepared is None:
        return 2
    options, stack, plan, reference = prepared
    lease = OutputLease(options.output, storage_for(options), plan.run_id, options.lease_seconds)
    try:
        lease.acquire()
    except LeaseHeldError as error:
        print(f"anonymize: {error}", file=sys.stderr)
        return 2
    try:
        # Planned again under the lease: another run may have committed shards meanwhile.
        again = _attempt("config error", lambda: plan_job(options, stack, run_id=plan.run_id))
        if again is None:
            return 2
        return _run_leased(options, stack, again, reference, lease)
    finally:
        lease.release()


def _run_leased(options: AnonymizeOptions, stack: DetectorStack, plan: JobPlan, reference: dict[str, Any] | None,
                lease: OutputLease) -> int:
    """The run itself, with the output's lease held: record, run, summarise, report, record."""
    detectors = stack.info()
    record_run_started(options, plan.run_id, detectors, plan.exclusions, len(plan.shards) + len(plan.skipped),
                       len(plan.skipped))
    storage = storage_for(options)
    started = time.monotonic()
    try:
        with ProgressBar(options.output, storage, plan.run_id, len(plan.shards) + len(plan.skipped),
                         len(plan.skipped)):
            result, _ = run(options=options, plan=plan, detectors=stack, lease=lease)
    except Exception as error:
        record_run_finished(options, plan.run_id, detectors, plan.exclusions,
                            read_manifests(options.output, storage), None, type(error).__name__)
        raise
    elapsed = time.monotonic() - started
    manifest = read_manifests(options.output, storage)
    summary = summarise(manifest, plan.shards + plan.skipped, reference)
    summary["settings"] = recorded_settings(options)  # exclusion identifiers are not written down
    summary["detector"] = dict(plan.run_info.detector)
    summary["detectors"] = detectors
    summary["wall_seconds"] = round(elapsed, 2)
    summary["shards_skipped_as_committed"] = len(plan.skipped)
    summary["metrics"] = metrics_summary(result) if result is not None else {}
    folder = write_summary(summary, options.output, storage)
    print(f"run {plan.run_id}: {summary['inputs']} records, {summary['published']} published, "
          f"{summary['quarantined']} quarantined in {elapsed:.1f} s")
    for line in format_metrics(summary["metrics"]) if result is not None else []:
        print(line)
    print("published outputs: " + ("; ".join(f"{count} {kind}" for kind, count in summary["published_outputs"].items())
                                   or "none"))
    report = build_report(options.output, storage, plan.shards + plan.skipped, summary,
                          gate_thresholds_for(options))
    print(f"outputs: {options.output}/data  manifest: {options.output}/manifest  "
          f"report: {report.index} (summary: {folder}/summary.html)")
    entry = record_run_finished(options, plan.run_id, detectors, plan.exclusions, manifest,
                                bool(summary["passed"] and report.passed))
    print(f"record of processing: {options.output}/audit/{entry['seq']:012d}.json "
          f"({summary.get('excluded', 0)} excluded by objection)")
    for line in verdict_lines(report.verdicts):
        print(line)
    if not summary["passed"]:
        failed = [name for name, ok in summary["checks"].items() if not ok]
        print(f"anonymize: run checks FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return _report_status(report)


def _report_status(report: ReportResult) -> int:
    """0 when the run is safe and complete (every shard gate, run expectation and run check passed);
    else 1, saying what failed."""
    if report.failed_shards:
        print(f"anonymize: shards FAILED the gate (quarantined): {', '.join(report.failed_shards)}",
              file=sys.stderr)
    failed = tuple(name for name in report.run_failed if name != WITHHELD_EXPECTATION) + report.summary_failed
    if failed:
        print(f"anonymize: run expectations FAILED: {', '.join(failed)}", file=sys.stderr)
    if not report.complete:
        completeness = report.verdicts.get("completeness") or {}
        print(f"anonymize: run INCOMPLETE: {completeness.get('text', WITHHELD_EXPECTATION + ' failed')}",
              file=sys.stderr)
    return 0 if report.passed else 1


def cmd_report(output: str, storage: Storage = DEFAULT_STORAGE) -> int:
    """Rebuild ``<output>/report/`` from the run's manifests and kept validation results."""
    report = _attempt(f"cannot build the report of {output}", lambda: build_report(output, storage))
    if report is None:
        return 2
    print(f"report: {report.index} ({'PASSED' if report.passed else 'FAILED'})")
    for line in verdict_lines(report.verdicts):
        print(line)
    return _report_status(report)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_review(args: argparse.Namespace, storage: Storage) -> int:
    """Open (or resume) a review sample and serve its page until interrupted; then rebuild the report."""
    from pipelines.review import ReviewServer, ReviewSession

    session = ReviewSession(args.output, storage, allow_originals=args.allow_originals)
    try:
        record = session.open(args.seed, args.confidence, args.margin, args.new_sample, args.operator)
        server = ReviewServer(session, args.port)
    except (FileNotFoundError, PermissionError, ValueError, OSError) as error:
        print(f"anonymize: review: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated server still rebuilds the report
    print(f"review page: {server.url}", flush=True)
    print(f"sample {record.review_id}: {len(record.sample)} of {record.population} published images "
          f"(seed {record.seed}, {record.confidence:g} confidence, margin {record.margin:g}); "
          f"originals {'may be shown (recorded)' if args.allow_originals else 'never shown'}; Ctrl-C to stop",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    summary = session.finish()
    print(f"review: {summary['verdict']}: {summary['text']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anonymize`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Great Expectations forces INFO on one of its loggers ("Created temporary directory ..."),
    # whenever it is imported: drop its records below WARNING at the handler instead.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: record.levelno >= logging.WARNING
                          or not record.name.startswith("great_expectations"))
    args, rest = _parser().parse_known_args(argv)
    if args.command == "run":
        return cmd_run(args.conf, args.set, rest)
    storage = Storage(args.s3_endpoint)  # the other commands' --s3-endpoint
    if args.command == "report":
        return cmd_report(args.output, storage)
    if args.command == "audit":
        return cmd_audit_verify(args.output, storage)
    if args.command == "erase":
        return cmd_erase(args.output, args.source_uri, args.subject_id, args.from_file, storage,
                         args.operator)
    if args.command == "purge":
        return cmd_purge(args.output, args.older_than, storage, args.operator)
    if args.command == "dpia":
        return cmd_dpia(args.output, storage)
    if args.command == "review":
        return cmd_review(args, storage)
    return 2


if __name__ == "__main__":
    sys.exit(main())
