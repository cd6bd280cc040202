"""Generation throughput: `python -m app.bench.sim [--attempts N] [--scenario S]`.

Times `simulate()` end to end (world build, pilot, simulation, Parquet writing) and prints
attempts per second; the target is >= 1M attempts per minute (16.7k/s) on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from app.sim.generate import simulate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.bench.sim")
    p.add_argument("--attempts", type=int, default=1_000_000)
    p.add_argument("--scenario", default="steady")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-oracle", action="store_true")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        r = simulate(a.scenario, a.attempts, a.seed, d, oracle=not a.no_oracle)
        size = sum(f.stat().st_size for f in r.files.values())
    print(
        f"scenario={a.scenario} attempts={r.attempts} seconds={r.seconds:.2f} "
        f"attempts_per_s={r.attempts_per_second:,.0f} "
        f"attempts_per_min={60 * r.attempts_per_second:,.0f} bytes={size:,}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
