"""Backfill throughput: a week of outcomes to the worker's state, vectorized vs one by one.

    python -m app.bench.backfill                      # steady, 7 days, 100,000 outcomes
    python -m app.bench.backfill --attempts 20000 --days 3 --scenario acquirer_outage

One simulated log, one run, three measurements:
1. `authpilot backfill --dry-run` in a subprocess, process start to exit: interpreter, imports,
   read, compute, summary (what an operator waits for; issue 14 target >= 20,000 outcomes/s);
2. the same stages in this process (median of --repeats): the ingest contract check, reading
   the outcomes, compute;
3. the reference, the per-outcome replay: the same outcomes read as records, put in replay
   order and pushed through FeatureState.update_outcome (four owners) and
   update_success_rate into dicts (`app.state.backfill.replay`).
The states of 2 and 3 are compared byte for byte, and rates are reported as ratios to 3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from app.config import get_settings
from app.contracts.ingest import require_valid_log
from app.sim.generate import simulate
from app.state.backfill import compute, read_outcomes
from app.state.backfill.replay import replay, replay_order
from app.state.backfill.vectorized import BackfillState


@dataclass(frozen=True)
class BackfillBench:
    outcomes: int
    cli_s: float  # subprocess `authpilot backfill --dry-run`, wall
    check_s: float  # the ingest contract check in process, median
    compute_s: float  # read + compute in process, median
    reference_s: float  # records read + replay order + per-outcome replay
    identical: bool  # the in-process state equals the reference byte for byte
    keys: dict[str, int]

    def rate(self, seconds: float) -> float:
        return self.outcomes / seconds if seconds > 0 else float("nan")


def identical(a: BackfillState, b: BackfillState) -> bool:
    """Every key of every store holds the same bytes in both."""
    return all(x == y for x, y in zip(a.stores().values(), b.stores().values(), strict=True))


def run(attempts: int = 100_000, days: float = 7, scenario: str = "steady", seed: int = 1,
        repeats: int = 3, cli: bool = True) -> BackfillBench:  # fmt: skip
    window = get_settings().sr_window
    with tempfile.TemporaryDirectory() as d:
        log = Path(d)
        simulate(scenario, attempts, seed, log, config={"days": days}, oracle=False)
        cli_s = float("nan")
        if cli:
            cmd = [sys.executable, "-m", "app.cli", "backfill", "--log", d, "--dry-run", "--quiet"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))
            cli_s = time.perf_counter() - t0
        checks, times = [], []
        state = None
        for _ in range(repeats):
            state = None  # the previous state's memory is freed before the next run
            t0 = time.perf_counter()
            require_valid_log(log)
            t1 = time.perf_counter()
            state = compute(read_outcomes(log, check=False), window)
            checks.append(t1 - t0)
            times.append(time.perf_counter() - t1)
        assert state is not None
        t0 = time.perf_counter()
        rows = pq.ParquetFile(log / "outcomes.parquet").read().to_pylist()
        ref = replay(replay_order(rows), window)
        reference_s = time.perf_counter() - t0
    keys = {name: len(s) for name, s in state.stores().items()}
    return BackfillBench(state.outcomes, cli_s, statistics.median(checks),
                         statistics.median(times), reference_s, identical(state, ref),
                         keys)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.bench.backfill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--attempts", type=int, default=100_000, help="outcomes in the log")
    p.add_argument("--days", type=float, default=7.0, help="days of history they span")
    p.add_argument("--scenario", default="steady")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="in-process runs (median)")
    p.add_argument("--no-cli", action="store_true", help="skip the subprocess measurement")
    a = p.parse_args(argv)
    load = os.getloadavg()[0]
    r = run(a.attempts, a.days, a.scenario, a.seed, a.repeats, not a.no_cli)
    ref = r.rate(r.reference_s)
    print(f"log: {a.scenario}, {a.days:g} days, {r.outcomes:,} outcomes; keys "
          + ", ".join(f"{k} {v:,}" for k, v in r.keys.items()))  # fmt: skip
    print(f"reference (per-outcome replay) {r.reference_s:8.2f} s {ref:10,.0f} outcomes/s   1.0x")
    both = r.check_s + r.compute_s
    print(f"backfill, in process           {both:8.2f} s {r.rate(both):10,.0f} outcomes/s "
          f"{r.rate(both) / ref:6.1f}x  (contract check {r.check_s:.2f} s + read and "
          f"compute {r.compute_s:.2f} s: {r.rate(r.compute_s):,.0f}/s)")  # fmt: skip
    if not a.no_cli:
        print(f"authpilot backfill --dry-run   {r.cli_s:8.2f} s {r.rate(r.cli_s):10,.0f} "
              f"outcomes/s {r.rate(r.cli_s) / ref:6.1f}x  (process start to exit; "
              f"target >= 20,000/s)")  # fmt: skip
    print(f"state identical to the reference: {r.identical}; load average "
          f"{load:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 cores)")  # fmt: skip
    return 0 if r.identical else 1


if __name__ == "__main__":
    sys.exit(main())
