"""`authpilot evaluate-policy`: every policy in the closed loop on the simulator, no Kafka.

    authpilot evaluate-policy --scenario steady --seeds 1,2,3 --payments 20000 --out var/eval

Steps (each prints progress): simulate a logged history over the first part of the scenario,
train and compile the model on it (cached), warm the learning routers with the history, then
run each policy on the same later payments for every seed and write report.md, summary.json
and policies.png to --out. The composition is app.evaluation.run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.config import get_settings
from app.evaluation import report
from app.evaluation.loop import Progress
from app.evaluation.run import DEFAULT_POLICIES, RETRIERS, ROUTERS, EvalConfig, evaluate, parse_pair


def _say(msg: str) -> None:
    print(f"[evaluate-policy {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _progress(seed: int, w: str) -> Progress:
    """One updating stderr line per run."""
    t1 = time.monotonic()
    ended = [False]

    def progress(done: int, n: int) -> None:
        took = time.monotonic() - t1
        msg = f"\r  seed {seed} {w:36s} {done:>7,}/{n:,} payments {took:5.1f}s"
        print(msg, end="", file=sys.stderr, flush=True)
        if done == n and not ended[0]:
            ended[0] = True
            print(file=sys.stderr)

    return progress


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="authpilot evaluate-policy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--scenario", default="steady")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated evaluation seeds")
    p.add_argument("--payments", type=int, default=20_000, help="payments per seed")
    p.add_argument("--history-attempts", type=int, default=200_000)
    p.add_argument("--history-days", type=float, default=None,
                   help="days of logged history before the evaluated window "
                        "(default: the first 75%% of the scenario)")  # fmt: skip
    p.add_argument(
        "--eval-days",
        type=float,
        default=None,
        help="length of the evaluated window (default: the rest of the scenario)",
    )
    p.add_argument("--history-seed", type=int, default=101)
    p.add_argument("--history-retry-explore", type=float, default=0.0,
                   help="share of the history's retries made at a random delay (0.5 h .. 7 d), "
                        "so engine_fitted can learn every delay")  # fmt: skip
    p.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help=f"router+retrier pairs; routers {ROUTERS}, retriers {RETRIERS}",
    )
    p.add_argument(
        "--margin-bps",
        type=float,
        default=None,
        help="value of an approval, bps of the amount (default AUTHPILOT_EV_MARGIN_BPS)",
    )
    p.add_argument("--pay-calendar", type=Path, default=None,
                   help="pay calendar JSON for the engine's payday candidates (default "
                        "AUTHPILOT_RETRY_PAY_CALENDAR; e.g. app/data/pay_calendars/"
                        "europe_monthly.json for --scenario monthly_pay)")  # fmt: skip
    p.add_argument("--work", type=Path, default=Path("var/evaluate"), help="cache of histories")
    p.add_argument("--out", type=Path, default=Path("var/evaluate/report"))
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    wanted = tuple(x.strip() for x in a.policies.split(",") if x.strip())
    try:
        for w in wanted:
            parse_pair(w)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    cfg = EvalConfig(a.scenario, tuple(int(x) for x in a.seeds.split(",") if x.strip()),
                     a.payments, a.history_attempts, a.history_days, a.eval_days,
                     a.history_seed, a.history_retry_explore, wanted, a.margin_bps,
                     a.pay_calendar, a.work)  # fmt: skip
    t0 = time.monotonic()
    result = evaluate(cfg, get_settings(), say=_say, progress=_progress)
    cmd = "authpilot evaluate-policy " + " ".join(argv)
    path = report.write(result.comparison, a.out, result.title, cmd)
    print(report.markdown(result.comparison, result.title, cmd))
    _say(f"report: {path} ({time.monotonic() - t0:.0f}s)")
    return 0 if all(c["pass"] is not False for c in result.comparison.checks) else 1
