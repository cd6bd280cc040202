"""`authpilot features build|bench`: the offline training matrix, the online cost per event."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def cmd_build(a: argparse.Namespace) -> int:
    from app.features.definitions import FEATURE_NAMES
    from app.features.offline import write_matrix

    t0 = time.monotonic()
    n = write_matrix(a.log, a.out)
    dt = time.monotonic() - t0
    print(
        f"{n} rows x {len(FEATURE_NAMES)} features -> {a.out} in {dt:.1f}s ({n / dt:,.0f} rows/s)"
    )
    return 0


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
        "features", help="features build|bench|kernel (SQL matrix, online cost, ring kernel)"
    )
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="the training matrix of an event log (DuckDB SQL)")
    b.add_argument("--log", type=Path, required=True, help="dir with requests/outcomes.parquet")
    b.add_argument("--out", type=Path, required=True, help="training matrix (.parquet)")
    b.set_defaults(func=cmd_build)
    c = actions.add_parser("bench", help="online feature cost per event (app.bench.features)")
    c.add_argument("--events", type=int, default=20000)
    c.add_argument("--routes", type=int, default=4, help="candidates per request")
    c.add_argument(
        "--reference-events", type=int, default=2000, help="events through the numpy reference"
    )
    c.set_defaults(func=cmd_bench)
    k = actions.add_parser(
        "kernel", help="build the compiled ring kernel into AUTHPILOT_KERNEL_DIR (needs gcc)"
    )
    k.set_defaults(func=cmd_kernel)
