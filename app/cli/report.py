"""`authpilot report experiment|shadow|retries`: what the A/B arms, the shadow challengers and
the retry agent did.

Reads the worker's decisions, outcomes and shadow decisions from an event-log directory
(app.experiments.eventlog) or straight from Kafka (app.experiments.kafka_log), analyses them
(experiment / shadow) and writes report.md, summary.json and the plots (render). Exit status 2
with a one-line message on missing or invalid input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.experiments.experiment import ExperimentReport
    from app.experiments.retries import RetryReport
    from app.experiments.shadow import ShadowReport


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="report experiment|shadow|retries: arms, z-test, sequential test, off-policy "
        "estimates; the retry agent's calibration where it retried",
        description=__doc__.split("\n")[0],
    )
    kinds = p.add_subparsers(dest="kind", required=True)
    for name, helptext in (
        ("experiment", "A/B arms against the control"),
        ("shadow", "shadow challengers against the champion"),
    ):
        c = kinds.add_parser(name, help=helptext)
        c.set_defaults(func=cmd_report)
        src = c.add_mutually_exclusive_group(required=True)
        src.add_argument("--log", type=Path, help="event-log directory (see the README)")
        src.add_argument("--bootstrap", help="read the topics from this Kafka cluster")
        c.add_argument("--out", type=Path, default=Path(f"reports/{name}"))
        c.add_argument(
            "--idle-timeout",
            type=float,
            default=60.0,
            help="Kafka: give up after this many seconds without a message",
        )
        c.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        if name == "experiment":
            c.add_argument("--control", help="control arm (default: control, else holdout)")
            c.add_argument(
                "--guardrail-margin",
                type=float,
                default=0.02,
                help="allowed rise of attempts/fees per payment, relative",
            )
            c.add_argument("--looks", type=int, default=50, help="looks of the sequential plot")
            c.add_argument(
                "--tau2", type=float, default=1e-4, help="mSPRT mixture variance of the difference"
            )
        else:
            c.add_argument("--challenger", help="only this model_version")
            # default None: ECE_BINS, read when the report runs (app.experiments needs scipy,
            # ~1 s to import, which no other command should pay for)
            c.add_argument(
                "--bins",
                type=int,
                default=None,
                help="calibration bins (default: app.experiments.stats.ECE_BINS)",
            )

    c = kinds.add_parser(
        "retries",
        help="the retry agent's p_recover against the outcomes of the retries it scheduled",
        description="Reads an event-log directory written by `authpilot export --from-topics` "
        "(retry_decisions/ and outcomes/), or the topics, and writes report.md, summary.json "
        "and reliability.png (app.experiments.retries).",
    )
    c.set_defaults(func=cmd_report)
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", type=Path, help="event-log directory (`export --from-topics`)")
    src.add_argument("--bootstrap", help="read the retry-decisions and outcomes topics")
    c.add_argument("--out", type=Path, default=Path("reports/retries"))
    c.add_argument("--idle-timeout", type=float, default=60.0,
                   help="Kafka: give up after this many seconds without a message")  # fmt: skip
    c.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def cmd_report(args: argparse.Namespace) -> int:
    from app.experiments.eventlog import ReportError, read_event_log
    from app.experiments.experiment import experiment_report
    from app.experiments.kafka_log import read_kafka
    from app.experiments.render import write_report
    from app.experiments.shadow import shadow_report
    from app.experiments.stats import ECE_BINS

    t0 = time.monotonic()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    shadow = args.kind == "shadow"
    report: ExperimentReport | ShadowReport | RetryReport
    writer: Callable[[Any, Path], Path] = write_report
    try:
        if args.kind == "retries":
            from app.experiments import retries

            if args.log is not None:
                found, where = retries.read_retry_log(args.log, progress), str(args.log)
            else:
                from app.config import get_settings
                from app.experiments.kafka_log import read_retry_kafka

                found = read_retry_kafka(get_settings(), args.bootstrap, progress,
                                         args.idle_timeout)  # fmt: skip
                where = f"kafka {args.bootstrap}"
            report, writer = retries.retry_report(*found, where), retries.write
        else:
            if args.log is not None:
                log = read_event_log(args.log, shadow, progress)
            else:
                from app.config import get_settings

                log = read_kafka(get_settings(), args.bootstrap, shadow, progress,
                                 args.idle_timeout)  # fmt: skip
            progress(
                f"{len(log.decisions):,} decisions, {len(log.outcomes):,} outcomes, "
                f"{len(log.shadow):,} shadow decisions"
            )
            if shadow:
                report = shadow_report(log, args.challenger,
                                       ECE_BINS if args.bins is None else args.bins)  # fmt: skip
            else:
                report = experiment_report(log, args.control, args.guardrail_margin, args.looks,
                                           args.tau2)  # fmt: skip
    except ReportError as exc:
        print(f"authpilot report {args.kind}: error: {exc}", file=sys.stderr)
        return 2
    path = writer(report, args.out)
    print(path.read_text())
    print(f"wrote {path} and plots in {args.out}", file=sys.stderr)
    return 0
