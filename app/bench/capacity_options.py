"""The capacity benchmark's stages and options, apart from the benchmark itself: the CLI builds
`authpilot bench-capacity` from them without importing a Kafka client (every command's parser
is built at start-up, and `backfill --dry-run` must import none)."""

from __future__ import annotations

import argparse
from pathlib import Path

STAGES = ("python", "faust", "faust-before", "sr", "ev", "closed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options (`python -m app.bench.capacity`, `authpilot bench-capacity`)."""
    p.add_argument("--requests", type=int, default=None, help="backlog size (default 20000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3000 requests, 5 s latency")
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help="seconds of paced load per latency point (default 20)",
    )
    p.add_argument(
        "--only",
        default=",".join(STAGES),
        help=f"comma-separated stages of {','.join(STAGES)} (bare Faust, the base, always runs)",
    )
    p.add_argument("--out", type=Path, default=Path("var/bench/capacity"))
    p.add_argument("--model-cache", type=Path, default=Path("var/bench/capacity/model"))
