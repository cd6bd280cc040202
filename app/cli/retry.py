"""`authpilot fit-retry`: the retry engine's recovery table fitted from an event log's retries
(app.retry.recovery_fit)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_fit_retry(a: argparse.Namespace) -> int:
    """Exit 2 when --log is not a directory, 3 when the log breaks the ingest contract."""
    from app.contracts.ingest import EXIT_REFUSED, LogRejected, require_valid_log
    from app.retry.recovery_fit import fit_from_log

    if not a.log.is_dir():
        print(f"authpilot fit-retry: {a.log} is not a directory", file=sys.stderr)
        return 2
    try:
        require_valid_log(a.log)
    except LogRejected as exc:
        print(f"authpilot fit-retry: refused.\n{exc.report.render()}", file=sys.stderr)
        return EXIT_REFUSED
    table = fit_from_log(a.log, a.strength)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(table, indent=1) + "\n")
    for name, c in table["classes"].items():
        print(f"{name:20s} p={c['p']} n={c['n']} payday_boost={c['payday_boost']} "
              f"repeat_decay={c['repeat_decay']}")  # fmt: skip
    print(f"wrote {a.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fit-retry",
        help="fit the retry engine's recovery table from a retry history",
        description="The retry engine's recovery table, estimated from a retry history.",
    )
    p.add_argument("--log", type=Path, required=True, help="event log with retries (simulate)")
    p.add_argument("--out", type=Path, required=True, help="recovery table JSON to write")
    p.add_argument("--strength", type=float, default=30.0, help="prior pseudo-observations")
    p.set_defaults(func=cmd_fit_retry)
