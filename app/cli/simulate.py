"""`authpilot simulate`: write a seeded event log of a scenario."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from app.sim.generate import CHUNK_PAYMENTS, simulate
from app.sim.scenarios import list_scenarios


class _Progress:
    """One self-overwriting stderr line: stage, attempts done, rate. Throttled to 5 Hz."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        el = now - self.t0
        if stage == "simulate":
            rate = done / el if el > 0 else 0.0
            pct = 100.0 * done / total if total else 100.0
            msg = f"simulate {done:>12,}/{total:,} attempts {pct:5.1f}%  {rate:,.0f}/s"
        else:
            msg = f"write  {done:>12,}/{total:,} rows"
        self.stream.write(f"\r[authpilot simulate {el:6.1f}s] {msg:<60}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def cmd_simulate(args: argparse.Namespace) -> int:
    prog = None if args.quiet else _Progress()
    try:
        res = simulate(
            args.scenario,
            args.attempts,
            args.seed,
            args.out,
            config=args.config,
            progress=prog,
            chunk_payments=args.chunk,
            oracle=not args.no_oracle,
        )
    except (FileNotFoundError, ValueError) as e:
        if prog:
            prog.close()
        print(f"authpilot simulate: error: {e}", file=sys.stderr)
        return 2
    if prog:
        prog.close()
    print(
        f"wrote {res.attempts:,} attempts ({res.payments:,} payments) to {res.out_dir} "
        f"in {res.seconds:.1f} s ({res.attempts_per_second:,.0f} attempts/s)",
        file=sys.stderr,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated event log",
        description="Simulate a payments world and write world.json + Parquet event log.",
    )
    presets = ", ".join(list_scenarios())
    p.add_argument("--scenario", default="steady", help=f"preset ({presets}) or a JSON file")
    p.add_argument("--attempts", type=int, default=1_000_000, help="attempts in the log")
    p.add_argument("--seed", type=int, default=1, help="run seed (the world itself is fixed)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="JSON file deep-merged over the scenario (SCENARIOS.md)")
    p.add_argument("--chunk", type=int, default=CHUNK_PAYMENTS, help="payments per chunk")
    p.add_argument("--no-oracle", action="store_true",
                   help="skip oracle_route/oracle_p_approve columns (faster)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_simulate)
