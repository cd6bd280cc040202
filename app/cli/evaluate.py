"""`authpilot evaluate-policy`: every policy in the closed loop on the simulator, no Kafka.

    authpilot evaluate-policy --scenario steady --seeds 1,2,3 --payments 20000 --out var/eval

Steps (each prints progress): simulate a logged history over the first part of the scenario,
train and compile the model on it (cached), warm the learning routers with the history, then
run each policy on the same later payments for every seed and write report.md, summary.json
and policies.png to --out. The composition is app.evaluation.run.

A scenario with events (acquirer_outage, issuer_shift, new_bin_range, holiday_surge) is
evaluated around them: the history ends half a day before the first event, the evaluated
window runs until a day after the last, and the report gains an "Adaptation" section (per
phase against the oracle and the static router, time to adapt, route demotion and restoration,
calibration) and adaptation.png. `--history-seeds` repeats all of it on several logged
histories (app.evaluation.histories). Exit 0 when every target passes, 1 when one misses (the
adaptation section's included), 2 for arguments it refuses.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.evaluation.loop import Progress
    from app.evaluation.run import EvalConfig, Evaluation


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


# The options in the order the report's command line repeats them (with their values).
_OPTIONS = ("scenario", "seeds", "payments", "history_attempts", "history_days", "eval_days",
            "history_seed", "history_seeds", "history_retry_explore", "policies", "margin_bps",
            "pay_calendar", "work", "refit_all", "out")  # fmt: skip


def command_line(a: argparse.Namespace) -> str:
    """The command that reproduces this evaluation, each option that has a value spelled out
    (a flag only when set; --history-seeds instead of --history-seed)."""
    opts = []
    for k in _OPTIONS:
        v = getattr(a, k, None)
        if v is None or v is False or (k == "history_seed" and getattr(a, "history_seeds", None)):
            continue
        opts.append(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}"))
    return " ".join(("authpilot evaluate-policy", *opts))


def cmd_evaluate(a: argparse.Namespace) -> int:
    # app.evaluation imports the trainers and scipy (~2 s): only when an evaluation runs
    from app.config import get_settings
    from app.evaluation import report
    from app.evaluation.run import DEFAULT_POLICIES, EvalConfig, evaluate, parse_pair

    policies = ",".join(DEFAULT_POLICIES) if a.policies is None else a.policies
    wanted = tuple(x.strip() for x in policies.split(",") if x.strip())
    try:
        for w in wanted:
            parse_pair(w)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    cfg = EvalConfig(a.scenario, tuple(int(x) for x in a.seeds.split(",") if x.strip()),
                     a.payments, a.history_attempts, a.history_days, a.eval_days,
                     a.history_seed, a.history_retry_explore, wanted, a.margin_bps,
                     a.pay_calendar, a.work, a.refit_all)  # fmt: skip
    t0 = time.monotonic()
    if a.history_seeds is not None:
        return _across_histories(a, cfg, t0)
    result = evaluate(cfg, get_settings(), say=_say, progress=_progress)
    cmd = command_line(a)
    path = report.write(result.comparison, a.out, result.title, cmd, result.adaptation)
    print(report.markdown(result.comparison, result.title, cmd))
    if result.adaptation is not None:
        from app.evaluation import adaptation

        print(adaptation.markdown(result.adaptation))
    _say(f"report: {path} ({time.monotonic() - t0:.0f}s)")
    return _exit([_targets(result)])


def _exit(checks: list[list[dict[str, Any]]]) -> int:
    """0 when no target of any evaluation missed, else 1."""
    return 0 if all(c["pass"] is not False for cs in checks for c in cs) else 1


def _targets(result: Evaluation) -> list[dict[str, Any]]:
    """Every check of an evaluation: the comparison's and the adaptation section's."""
    more = result.adaptation.checks if result.adaptation is not None else []
    return [*result.comparison.checks, *more]


def _across_histories(a: argparse.Namespace, cfg: EvalConfig, t0: float) -> int:
    """--history-seeds: the evaluation once per history (its report in OUT/history-<seed>/),
    then every target per history (app.evaluation.histories). Exit 1 when any target misses
    on any history (as one evaluation exits 1 when any of its targets misses)."""
    from dataclasses import replace

    from app.config import get_settings
    from app.evaluation import histories, report
    from app.evaluation.run import evaluate

    try:
        seeds = [int(x) for x in a.history_seeds.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        print(f"--history-seeds {a.history_seeds!r}: give distinct integers, e.g. 101,102,103",
              file=sys.stderr)  # fmt: skip
        return 2
    checks = []
    for i, hs in enumerate(seeds):
        _say(f"history {hs} ({i + 1} of {len(seeds)})")
        one = argparse.Namespace(**{**vars(a), "history_seed": hs, "history_seeds": None,
                                    "out": a.out / f"history-{hs}"})  # fmt: skip
        result = evaluate(replace(cfg, history_seed=hs), get_settings(), say=_say,
                          progress=_progress)  # fmt: skip
        report.write(result.comparison, one.out, result.title, command_line(one),
                     result.adaptation)  # fmt: skip
        checks.append(_targets(result))
    across = histories.merge(seeds, checks)
    path = histories.write(across, a.out, command_line(a))
    print(histories.markdown(across, command_line(a)))
    _say(f"report: {path} ({time.monotonic() - t0:.0f}s)")
    return _exit(checks)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate-policy", description=__doc__,
                       help="every policy in the closed loop on the simulator, with a report",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--scenario", default="steady")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated evaluation seeds")
    p.add_argument("--payments", type=int, default=20_000, help="payments per seed")
    p.add_argument("--history-attempts", type=int, default=200_000)
    p.add_argument("--history-days", type=float, default=None,
                   help="days of logged history before the evaluated window (default: the "
                        "first 75%% of the scenario; with events and no --eval-days either, "
                        "until half a day before the first event)")  # fmt: skip
    p.add_argument("--eval-days", type=float, default=None,
                   help="length of the evaluated window (default: the rest of the scenario; "
                        "with events, until a day after the last one is over)")  # fmt: skip
    p.add_argument("--history-seed", type=int, default=101)
    p.add_argument("--history-seeds", default=None,
                   help="comma-separated history seeds: the evaluation on each history (its "
                        "own model), each target's verdict per history side by side")  # fmt: skip
    p.add_argument("--history-retry-explore", type=float, default=0.0,
                   help="share of the history's retries made at a random delay (0.5 h .. 7 d), "
                        "so engine_fitted can learn every delay")  # fmt: skip
    p.add_argument(
        "--policies",
        default=None,
        help="comma-separated router+retrier pairs (default: DEFAULT_POLICIES of "
        "app.evaluation.run); an unknown name is refused with the list of valid ones",
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
    p.add_argument("--refit-all", action="store_true",
                   help="the router and recovery models refitted on every history row with "
                        "their split's rounds, calibrated out of fold (`train "
                        "--refit-all`)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("var/evaluate/report"))
    p.set_defaults(func=cmd_evaluate)
