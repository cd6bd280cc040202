"""`authpilot export --from-topics --out DIR`: the worker's history from Kafka as an event log.

Each run adds the messages produced since the previous run's end offsets (DIR/offsets.json) as
new parts: requests, outcomes and attempts in the ingest contract, decisions and shadow for
`authpilot report`, retry_decisions (app.lifecycle.export). Exit status 2 with a one-line
message when Kafka, a required topic or DIR is not usable.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="export the topics' history to an event-log directory, resumable by offsets",
        description=__doc__.split("\n")[0],
    )
    p.set_defaults(func=cmd_export)
    p.add_argument(
        "--from-topics",
        action="store_true",
        required=True,
        help="read the worker's topics (the only source for now)",
    )
    p.add_argument("--out", type=Path, required=True, help="event-log directory to add to")
    p.add_argument("--bootstrap", help="Kafka cluster (default: AUTHPILOT_KAFKA_BOOTSTRAP)")
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="give up after this many seconds without a message short of the end offsets",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def cmd_export(args: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.experiments.eventlog import ReportError
    from app.lifecycle.export import export_topics

    t0 = time.monotonic()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    settings = get_settings()
    if args.bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": args.bootstrap})
    try:
        summary = export_topics(settings, args.out, progress, args.idle_timeout)
    except ReportError as exc:
        print(f"authpilot export: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary.render()))
    return 0
