"""`authpilot` command line: broker, worker, backfill, traffic, demo, and the ML lifecycle commands.

Each command group is one module of app.cli exposing `add_parser(subparsers)`, which registers
its commands with `set_defaults(func=handler)`; a handler takes the parsed arguments, calls
library functions and returns the exit status. This module only assembles and dispatches.
"""

from __future__ import annotations

import argparse
import sys

from app.cli import (
    backfill,
    bench,
    broker,
    chaos,
    evaluate,
    export,
    features,
    lifecycle,
    models,
    report,
    retry,
    simulate,
    sweep,
    traffic,
    worker,
)

# Order of `authpilot --help`: run the system, then the ML lifecycle, then analysis.
GROUPS = (broker, worker, backfill, traffic, features, simulate, models, lifecycle, sweep, bench,
          report, export, retry, evaluate, chaos)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="authpilot", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
