"""`authpilot features build|check|bench|kernel`: the offline training matrix of an event log
(after checking the log against the ingest contract), the check alone, the online cost per
event, the ring kernel built ahead (what the image does)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Exit statuses: 0 done; 2 a usage error or a --log path that does not exist; 3 the log was
# read and refused by the ingest contract (app.contracts.ingest.EXIT_REFUSED; not imported here:
# the contract module loads DuckDB, and importing the CLI must not).
_NO_LOG = 2


def _log_dir_missing(cmd: str, log: Path) -> bool:
    if log.is_dir():
        return False
    print(
        f"authpilot {cmd}: {log} is not a directory (an event log: requests and outcomes "
        "Parquet, README 'Bringing your own history')",
        file=sys.stderr,
    )
    return True


def cmd_build(a: argparse.Namespace) -> int:
    from app.contracts.ingest import EXIT_REFUSED, LogRejected
    from app.features.definitions import FEATURE_NAMES
    from app.features.offline import write_matrix

    if _log_dir_missing("features build", a.log):
        return _NO_LOG
    t0 = time.monotonic()
    try:
        built = write_matrix(a.log, a.out)
    except LogRejected as exc:
        print(
            f"authpilot features build: refused, no matrix written.\n{exc.report.render()}",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    dt = time.monotonic() - t0
    print(built.report.summary_line())
    for w in built.report.warnings:
        print(w.render())
    n = built.rows
    print(
        f"{n} rows x {len(FEATURE_NAMES)} features -> {a.out} in {dt:.1f}s ({n / dt:,.0f} rows/s)"
    )
    if built.quality:
        js, md = built.quality
        print(f"data-quality summary: {md} (and {js.name})")
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    from app.contracts.ingest import EXIT_REFUSED, check_log

    if _log_dir_missing("features check", a.log):
        return _NO_LOG
    report = check_log(a.log)
    print(report.render(), file=sys.stdout if report.ok else sys.stderr)
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return 0 if report.ok else EXIT_REFUSED


def cmd_bench(a: argparse.Namespace) -> int:
    from app.bench.features import run

    run(a.events, a.routes, a.reference_events)
    return 0


def cmd_kernel(a: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.state.windows import kernel

    t0 = time.monotonic()
    path = kernel.build(get_settings().kernel_dir)
    kernel.import_from(path)
    print(f"{path} ({time.monotonic() - t0:.2f}s)")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "features", help="features build|check|bench|kernel (SQL matrix, log check, online cost)"
    )
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser(
        "build",
        help="the training matrix of an event log (DuckDB SQL)",
        description="Check the log against the ingest contract (exit 3 with a report when it "
        "fails; nothing is written), build the training matrix and write a data-quality "
        "summary beside it (<out stem>.quality.md and .json).",
    )
    b.add_argument("--log", type=Path, required=True, help="event log dir (requests, outcomes)")
    b.add_argument("--out", type=Path, required=True, help="training matrix (.parquet)")
    b.set_defaults(func=cmd_build)
    c = actions.add_parser(
        "check",
        help="check an event log against the ingest contract (exit 3 when it fails)",
        description="The check `features build`, `train --log` and backfill run first, alone.",
    )
    c.add_argument("--log", type=Path, required=True, help="event log dir (requests, outcomes)")
    c.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    c.set_defaults(func=cmd_check)
    d = actions.add_parser("bench", help="online feature cost per event (app.bench.features)")
    d.add_argument("--events", type=int, default=20000)
    d.add_argument("--routes", type=int, default=4, help="candidates per request")
    d.add_argument(
        "--reference-events", type=int, default=2000, help="events through the numpy reference"
    )
    d.set_defaults(func=cmd_bench)
    k = actions.add_parser(
        "kernel", help="build the compiled ring kernel into AUTHPILOT_KERNEL_DIR (needs gcc)"
    )
    k.set_defaults(func=cmd_kernel)
