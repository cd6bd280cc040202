"""`authpilot backfill`: the online state of an event log, computed offline, then loaded.

The log is checked against the ingest contract first (refused: exit 3, nothing computed).
Computing has no side effects (nothing is sent to Kafka: no decision, retry decision or
alert); loading is one call, app.state.backfill.load, skipped by --dry-run. Exit statuses:
0 done; 1 loading failed; 2 usage, or --log is not a directory; 3 the log was refused.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.state.backfill import BackfillState


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not epoch ms or ISO 8601: {text!r}") from e
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def summary(state: BackfillState, seconds: dict[str, float], now_ms: int) -> list[str]:
    """The lines printed after computing: outcomes, as-of, keys and bytes per store, and the
    time of each stage (check, read, compute) with the outcomes/s of all of them."""
    from app.state.backfill import aged_out_windows

    lines = [
        f"outcomes      {state.outcomes:>12,}  (duplicates dropped {state.duplicates:,}, "
        f"after --as-of {state.after_as_of:,})"
    ]
    if state.as_of_ms is not None:
        age_h = (now_ms - state.as_of_ms) / 3_600_000
        gone = aged_out_windows(state.as_of_ms, now_ms)
        lines.append(
            f"as of         {_iso(state.as_of_ms)}  ({age_h:,.1f} h before now; windows a worker "
            f"starting now sees empty: {', '.join(gone) or 'none'})"
        )
    for name, store in state.stores().items():
        size = sum(map(len, store.values()))
        lines.append(f"{name:<13} {len(store):>12,} keys  {size / 1e6:9.1f} MB")
    per = state.keys_per_entity.items()
    lines.append("keys/entity   " + ", ".join(f"{k} {v:,}" for k, v in per))
    total = sum(seconds.values())
    rate = state.outcomes / total if total > 0 else 0.0
    stages = " + ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
    lines.append(
        f"time          {stages} = {total:.2f} s  ({rate:,.0f} outcomes/s; "
        f"sr_window {state.sr_window})"
    )
    return lines


def cmd_backfill(a: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.contracts.ingest import EXIT_REFUSED, LogRejected, require_valid_log
    from app.state.backfill import BackfillError, compute, load, read_outcomes

    if not a.log.is_dir():
        print(f"authpilot backfill: {a.log} is not a directory (an event log: requests and "
              "outcomes Parquet, README 'Bringing your own history')", file=sys.stderr)  # fmt: skip
        return 2
    settings = get_settings()
    if a.sr_window is not None:
        settings = settings.model_copy(update={"sr_window": a.sr_window})
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        if not a.quiet:
            print(f"[{time.perf_counter() - t0:6.2f}s] {msg}", file=sys.stderr, flush=True)

    seconds: dict[str, float] = {}
    try:
        progress(f"checking {a.log} against the ingest contract")
        report = require_valid_log(a.log)
        seconds["check"] = time.perf_counter() - t0
        progress(report.summary_line())
        table = read_outcomes(a.log, check=False)
        seconds["read"] = time.perf_counter() - t0 - seconds["check"]
        progress(f"{table.num_rows:,} outcome rows read")
        state = compute(table, settings.sr_window, a.as_of, progress)
    except LogRejected as exc:
        print(f"authpilot backfill: refused, nothing computed.\n{exc.report.render()}",
              file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    except BackfillError as exc:
        print(f"authpilot backfill: error: {exc}", file=sys.stderr)
        return 2
    seconds["compute"] = time.perf_counter() - t0 - seconds["check"] - seconds["read"]
    for w in report.warnings:
        print(w.render())
    print("\n".join(summary(state, seconds, int(time.time() * 1000))))
    if a.dry_run:
        print("dry run: nothing loaded")
        return 0
    from app.state.backfill.load import LoadError

    try:
        loaded = load(state, settings, a.outcomes_from, progress, a.connect_timeout)
    except LoadError as exc:
        print(f"authpilot backfill: not loaded: {exc}", file=sys.stderr)
        return 1
    written = ", ".join(f"{k} {v:,}" for k, v in loaded.records.items())
    print(f"loaded        {written} -> {loaded.target} in {loaded.seconds:.2f} s")
    total = time.perf_counter() - t0
    print(f"end to end    {total:.2f} s = {state.outcomes / total:,.0f} outcomes/s "
          f"(check, read, compute, load); marks {loaded.marks}")  # fmt: skip
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backfill",
        help="compute the online state of an event log offline and load it (warm start)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log", type=Path, required=True,
                   help="event-log dir: outcomes.parquet or outcomes/*.parquet")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="compute and summarize, load nothing")
    p.add_argument("--as-of", type=parse_time_ms, default=None,
                   help="state after the outcomes with event_time <= this (epoch ms or ISO "
                        "8601; default: the newest outcome)")  # fmt: skip
    p.add_argument("--sr-window", type=int, default=None,
                   help="outcomes per success-rate ring (default AUTHPILOT_SR_WINDOW)")  # fmt: skip
    p.add_argument("--outcomes-from", choices=("end", "start"), default="end",
                   help="end (default): the log includes the outcomes already in the outcomes "
                        "topic, workers start after them; start: the log precedes the topic, "
                        "workers learn every retained outcome on top")  # fmt: skip
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for the broker before refusing the load (default 15)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_backfill)
