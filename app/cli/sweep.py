"""`authpilot sweep`: router models from tiny to large against their serving latency
(app.models.frontier.sweep), with the Pareto front and a champion under a latency budget."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.config import get_settings


def _say(msg: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cmd_sweep(a: argparse.Namespace) -> int:
    from app.models.frontier.sweep import SweepConfig, run

    cfg = SweepConfig(scenario=a.scenario, matrix=a.matrix, out=a.out, work=a.work,
                      history_attempts=a.history_attempts, history_days=a.history_days,
                      eval_days=a.eval_days, payments=a.payments, seed=a.seed,
                      budget_us=a.budget_us, reps=a.reps, track=not a.no_track)  # fmt: skip
    try:
        res = run(cfg, get_settings(), say=_say)
    except ValueError as exc:
        print(f"authpilot sweep: {exc}", file=sys.stderr)
        return 2
    rec = res.recommended
    print(f"front: {', '.join(f.name for f in res.front)}")
    print(f"recommended under {a.budget_us:g} us p99: {rec.name if rec else 'none fits'}"
          + (f"; registered {res.registered}" if res.registered else ""))  # fmt: skip
    print(f"report: {res.report}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sweep", help="model complexity vs latency: a grid, its frontier, a pick",
                       description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument(
        "--matrix",
        default="default",
        help="candidates: a preset of app/data/sweep (default, small) or a JSON file",
    )
    p.add_argument("--scenario", default="steady")
    p.add_argument(
        "--budget-us",
        type=float,
        default=50.0,
        help="p99 latency budget of one 4-route request (us) for the recommendation",
    )
    p.add_argument("--history-attempts", type=int, default=200_000)
    p.add_argument("--history-days", type=float, default=21.0)
    p.add_argument("--eval-days", type=float, default=7.0)
    p.add_argument("--payments", type=int, default=5_000, help="closed-loop payments")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reps", type=int, default=3_000, help="timed calls per latency figure")
    p.add_argument("--out", type=Path, default=Path("var/sweep"))
    p.add_argument(
        "--work",
        type=Path,
        default=Path("var/eval-cache"),
        help="the history, matrix and default model, cached by their inputs",
    )
    p.add_argument("--no-track", action="store_true", help="no MLflow runs, nothing registered")
    p.set_defaults(func=cmd_sweep)
