"""`authpilot evaluate-policy`: every policy in the closed loop on the simulator, no Kafka.

    authpilot evaluate-policy --scenario steady --seeds 1,2,3 --payments 20000 --out var/eval

Steps (each prints progress): simulate a logged history over the first part of the scenario,
train and compile the model on it (cached), warm the learning routers with the history, then
run each policy on the same later payments for every seed and write report.md, summary.json
and policies.png to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.config import get_settings
from app.evaluation import report
from app.evaluation.ceiling import hindsight_recoverable
from app.evaluation.loop import PolicyRun, eval_payments, run_policy
from app.evaluation.policies import (
    BestSingleRouter,
    EngineRetrier,
    FixedScheduleRetrier,
    OracleRouter,
    Retrier,
    Router,
    warm_copy,
)
from app.evaluation.prepare import prepare, warm_routers
from app.retry.engine import RetryParams, load_recovery
from app.retry.recovery_fit import fit_from_log
from app.retry.rules import NetworkRules
from app.routing import baselines, expected_value, success_rate

ROUTERS = (baselines.BEST_SINGLE, success_rate.POLICY_NAME, expected_value.POLICY_NAME,
           baselines.ORACLE)  # fmt: skip
RETRIERS = (baselines.FIXED_SCHEDULE, "engine", "engine_fitted")
DEFAULT_POLICIES = (
    "best_single_route+fixed_schedule",
    "success_rate+fixed_schedule",
    "expected_value+fixed_schedule",
    "best_single_route+engine",
    "success_rate+engine",
    "expected_value+engine",
    "oracle+engine",
)
CHAMPION = "expected_value+engine"
FIXED_BASELINE = "expected_value+fixed_schedule"  # same router: the retry policies compared


def _say(msg: str) -> None:
    print(f"[evaluate-policy {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
    s = get_settings()
    margin = s.ev_margin_bps if a.margin_bps is None else a.margin_bps
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    wanted = [x.strip() for x in a.policies.split(",") if x.strip()]
    for w in wanted:
        r, _, t = w.partition("+")
        if r not in ROUTERS or t not in RETRIERS:
            print(f"unknown policy {w!r}: use router+retrier with routers {ROUTERS} and "
                  f"retriers {RETRIERS}", file=sys.stderr)  # fmt: skip
            return 2
    t0 = time.monotonic()
    from app.sim import load_world

    horizon = load_world(a.scenario).days
    hist_days = a.history_days if a.history_days is not None else round(horizon * 0.75, 2)
    eval_days = a.eval_days if a.eval_days is not None else horizon - hist_days
    prep = prepare(a.scenario, a.work, hist_days, a.history_attempts, a.history_seed,
                   retry_explore=a.history_retry_explore, say=_say)  # fmt: skip
    ev_params = replace(expected_value.EVParams.from_settings(s), margin_bps=margin)
    evr, srr = warm_routers(prep, ev_params, success_rate.SRParams.from_settings(s),
                            s.sr_window, say=_say)  # fmt: skip
    rules = NetworkRules(s.visa_rules_variant)
    calendar = a.pay_calendar if a.pay_calendar is not None else s.retry_pay_calendar
    routers: dict[str, Router] = {
        baselines.BEST_SINGLE: BestSingleRouter(prep.best_routes),
        success_rate.POLICY_NAME: srr,
        expected_value.POLICY_NAME: evr,
        baselines.ORACLE: OracleRouter(prep.world, margin),
    }
    retriers: dict[str, Retrier] = {
        baselines.FIXED_SCHEDULE: FixedScheduleRetrier(rules),
        "engine": EngineRetrier(
            rules,
            RetryParams(margin, s.retry_attempt_cost_minor, recovery=load_recovery(None, calendar)),
        ),
    }
    if any(w.endswith("+engine_fitted") for w in wanted):  # recovery table fitted on the history
        fitted = fit_from_log(prep.log_dir, prior=load_recovery(None, calendar))
        params = RetryParams(margin, s.retry_attempt_cost_minor, recovery=fitted)
        retriers["engine_fitted"] = EngineRetrier(rules, params, "engine_fitted")
    runs: list[PolicyRun] = []
    payments: dict[int, list[dict[str, Any]]] = {}
    for seed in seeds:
        pays = payments[seed] = eval_payments(prep.world, hist_days, hist_days + eval_days,
                                              a.payments, seed)  # fmt: skip
        for w in wanted:
            r, _, t = w.partition("+")
            t1 = time.monotonic()

            def progress(done: int, n: int, w: str = w, seed: int = seed, t1: float = t1) -> None:
                took = time.monotonic() - t1
                msg = f"\r  seed {seed} {w:36s} {done:>7,}/{n:,} payments {took:5.1f}s"
                print(msg, end="", file=sys.stderr, flush=True)

            run = run_policy(prep.world, pays, warm_copy(routers[r]), retriers[t], rules, seed,
                             progress)  # fmt: skip
            print(file=sys.stderr)
            runs.append(run)
    champion = CHAMPION if CHAMPION in wanted else wanted[-1]
    ceiling = None
    if FIXED_BASELINE in wanted and champion != FIXED_BASELINE:
        _say("hindsight retry ceiling (one clairvoyant retry per declined MIT payment)")
        parts = []
        for seed in seeds:
            run = next(r for r in runs if r.policy == champion and r.seed == seed)
            ok = hindsight_recoverable(prep.world, payments[seed], run.first_declines, rules, seed)
            parts.append(run.amount * ok)
        ceiling = np.concatenate(parts)
    comp = report.compare(runs, margin, champion=champion,
                          single=f"{baselines.BEST_SINGLE}+engine",
                          success_rate=f"{success_rate.POLICY_NAME}+engine",
                          oracle=f"{baselines.ORACLE}+engine",
                          fixed=FIXED_BASELINE, ceiling=ceiling)  # fmt: skip
    cmd = "authpilot evaluate-policy " + " ".join(argv)
    title = (f"Policy evaluation: {a.scenario}, history {hist_days:g} days, evaluated days "
             f"{hist_days:g}-{hist_days + eval_days:g}, margin {margin:g} bps")  # fmt: skip
    path = report.write(comp, a.out, title, cmd)
    print(report.markdown(comp, title, cmd))
    _say(f"report: {path} ({time.monotonic() - t0:.0f}s)")
    return 0 if all(c["pass"] is not False for c in comp.checks) else 1
