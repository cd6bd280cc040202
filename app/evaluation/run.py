"""One `evaluate-policy` run: prepare the history, build every router+retrier pair from the
routing and retry registries, run them on the same payments per seed, compare.

A pair is named router+retrier with names from the registries, plus `engine_fitted`: the
engine with the recovery table fitted on the history (`authpilot fit-retry`), what a worker
runs with AUTHPILOT_RETRY_RECOVERY_FILE, `engine_learned`: the engine with the recovery
model trained on the history's retries (app.retry.recovery_model), and `engine_relearned`:
the same, its model refitted once during the run on the history and the run's own outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.contracts.vocab import DAY_MS
from app.evaluation import adaptation, incidents, report
from app.evaluation.ceiling import best_true_p, budget_allocation, hindsight_recoverable
from app.evaluation.loop import PolicyRun, Progress, Refit, eval_payments, run_policy
from app.evaluation.policies import DispatchRouter, StaticModels
from app.evaluation.prepare import Say, load_model, prepare, warm_state
from app.retry import engine, fixed_schedule
from app.retry import registry as retry_registry
from app.retry.engine import RetryParams, load_recovery
from app.retry.recovery_fit import fit_from_log
from app.retry.registry import RetryPolicy
from app.retry.rules import NetworkRules
from app.routing import best_single, expected_value, oracle, success_rate
from app.routing import registry as routing_registry
from app.sim.truth import true_p

FITTED = "engine_fitted"  # the engine, recovery table fitted on the history
LEARNED = "engine_learned"  # the engine, recovery model trained on the history
# engine_learned, its model refitted once, REFIT_AT into the evaluated window, on the history
# and the run's own outcomes so far (its chosen retries and its explored ones): what the
# production pipeline's retrain of the retry role does (`authpilot train-retry` on the
# worker's exported history)
RELEARNED = "engine_relearned"
REFIT_AT = 1 / 3
ROUTERS = routing_registry.NAMES
RETRIERS = (*retry_registry.NAMES, FITTED, LEARNED, RELEARNED)
CHAMPION = f"{expected_value.POLICY_NAME}+{engine.POLICY_NAME}"
# same router as the champion: the retry policies compared
FIXED_BASELINE = f"{expected_value.POLICY_NAME}+{fixed_schedule.POLICY_NAME}"
DEFAULT_POLICIES = (
    f"{best_single.POLICY_NAME}+{fixed_schedule.POLICY_NAME}",
    f"{success_rate.POLICY_NAME}+{fixed_schedule.POLICY_NAME}",
    FIXED_BASELINE,
    f"{best_single.POLICY_NAME}+{engine.POLICY_NAME}",
    f"{success_rate.POLICY_NAME}+{engine.POLICY_NAME}",
    CHAMPION,
    f"{oracle.POLICY_NAME}+{engine.POLICY_NAME}",
)
RunProgress = Callable[[int, str], Progress]  # (seed, pair) -> progress callback of that run


@dataclass(frozen=True)
class EvalConfig:
    scenario: str = "steady"
    seeds: tuple[int, ...] = (1, 2, 3)
    payments: int = 20_000  # per seed
    history_attempts: int = 200_000
    # default: the first 75% of the scenario and the rest; around its events when it has some
    # (app.evaluation.incidents.windows)
    history_days: float | None = None
    eval_days: float | None = None
    history_seed: int = 101
    history_retry_explore: float = 0.0
    policies: tuple[str, ...] = DEFAULT_POLICIES
    margin_bps: float | None = None  # default AUTHPILOT_EV_MARGIN_BPS
    pay_calendar: Path | None = None  # default AUTHPILOT_RETRY_PAY_CALENDAR
    work: Path = Path("var/evaluate")
    refit_all: bool = False  # the models refitted on every history row (train --refit-all)


@dataclass(frozen=True)
class Evaluation:
    comparison: report.Comparison
    title: str
    # per phase of the window's events (none: only the closed-loop calibration)
    adaptation: adaptation.Adaptation | None = None


def learned_recovery(outcomes: list[dict[str, Any]], table: Any, say: Say,
                     what: str = "in the history", refit_all: bool = False) -> Any:  # fmt: skip
    """The recovery model trained on the retries of `outcomes` (event-time order)."""
    from app.retry import recovery_model as rm

    x, y, t = rm.observations(outcomes, rm.featurizer(table))
    say(f"retry model: {len(y):,} retries {what}")
    model = rm.fit(x, y, t, refit_all=refit_all)
    m = model.metrics
    say(f"retry model: test log loss {m['test_log_loss']:.4f} (base rate "
        f"{m['test_log_loss_base_rate']:.4f}), {m['trees']:.0f} trees")  # fmt: skip
    if "refit_all_rows" in m:
        say(f"retry model: served refitted on all {m['refit_all_rows']:,.0f} retries, "
            f"out-of-fold log loss {m['oof_log_loss']:.4f}, ECE {m['oof_ece']:.4f}")  # fmt: skip
    return model


def _refit(history: list[dict[str, Any]], table: Any, say: Say, day: float,
           refit_all: bool = False) -> Refit:  # fmt: skip
    """The refit of engine_relearned: the retrier's own engine, its model retrained on the
    history's outcomes and the run's (event-time order; the run's payment ids are its own)."""

    def refit(retrier: RetryPolicy, seen: list[dict[str, Any]]) -> RetryPolicy:
        both = sorted([*history, *seen], key=lambda o: (int(o["event_time"]), int(o["attempt"])))
        model = learned_recovery(both, table, say,
                                 f"at day {day:g}: the history's and {len(seen):,} outcomes "
                                 "of this run", refit_all)  # fmt: skip
        if not isinstance(retrier, retry_registry.EngineRetry):
            raise TypeError(f"{RELEARNED} refits an engine retrier, not {retrier.name}")
        return replace(retrier, params=replace(retrier.params, model=model))

    return refit


def parse_pair(spec: str) -> tuple[str, str]:
    """(router, retrier) of 'router+retrier[@cost]'; ValueError for a name no registry holds.
    `@cost` runs an engine retrier with that surcharge per attempt on top of the route's fee
    (minor units, AUTHPILOT_RETRY_ATTEMPT_SURCHARGE_MINOR): its stop rule trades attempts for
    value, so a few costs draw the retrier's value-vs-attempt-budget curve."""
    r, _, t = spec.partition("+")
    base, at, cost = t.partition("@")
    ok = r in ROUTERS and base in RETRIERS
    if ok and at:
        try:
            ok = float(cost) >= 0 and base != fixed_schedule.POLICY_NAME
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(f"unknown policy {spec!r}: use router+retrier[@cost] with routers "
                         f"{ROUTERS} and retriers {RETRIERS} (@cost: engines only)")  # fmt: skip
    return r, t


def evaluate(cfg: EvalConfig, s: Settings, say: Say = print,
             progress: RunProgress | None = None) -> Evaluation:  # fmt: skip
    """Every pair of `cfg.policies` on every seed, compared (see app.evaluation.report)."""
    from app.sim import load_world

    pairs = {w: parse_pair(w) for w in cfg.policies}
    margin = s.ev_margin_bps if cfg.margin_bps is None else cfg.margin_bps
    hist_days, eval_days = incidents.windows(load_world(cfg.scenario), cfg.history_days,
                                             cfg.eval_days)  # fmt: skip
    prep = prepare(cfg.scenario, cfg.work, hist_days, cfg.history_attempts, cfg.history_seed,
                   retry_explore=cfg.history_retry_explore, refit_all=cfg.refit_all,
                   say=say)  # fmt: skip
    state = warm_state(prep, s.sr_window, say=say)
    models = StaticModels(load_model(prep))
    es = s.model_copy(update={"ev_margin_bps": margin, "best_routes": prep.best_routes})
    rules = NetworkRules(s.visa_rules_variant)
    calendar = cfg.pay_calendar if cfg.pay_calendar is not None else s.retry_pay_calendar
    params = RetryParams(margin, s.retry_attempt_cost_minor,
                         recovery=load_recovery(None, calendar),
                         explore=s.retry_explore,
                         attempt_surcharge_minor=s.retry_attempt_surcharge_minor)  # fmt: skip
    retriers = {n: retry_registry.build(n, rules, params) for n in retry_registry.NAMES}
    engines = {engine.POLICY_NAME: params}  # the engine retriers' parameters, by name
    bases = {t.partition("@")[0] for _, t in pairs.values()}
    if FITTED in bases:
        fitted = fit_from_log(prep.log_dir, prior=load_recovery(None, calendar))
        engines[FITTED] = replace(params, recovery=fitted)
    if LEARNED in bases or RELEARNED in bases:
        engines[LEARNED] = replace(
            params,
            model=learned_recovery(prep.outcomes, params.recovery, say, refit_all=cfg.refit_all),
        )
        engines[RELEARNED] = engines[LEARNED]
    for name, ps in engines.items():
        retriers[name] = retry_registry.build(engine.POLICY_NAME, rules, ps)
    for _, t in pairs.values():
        base, at, cost = t.partition("@")
        if at:
            at_cost = replace(engines[base], attempt_surcharge_minor=float(cost))
            retriers[t] = retry_registry.build(engine.POLICY_NAME, rules, at_cost)
    oracle_p = true_p(prep.world)
    runs: list[PolicyRun] = []
    payments: dict[int, list[dict[str, Any]]] = {}
    for seed in cfg.seeds:
        pays = payments[seed] = eval_payments(prep.world, hist_days, hist_days + eval_days,
                                              cfg.payments, seed)  # fmt: skip
        refit_at = prep.world.start_ms + int((hist_days + REFIT_AT * eval_days) * DAY_MS)
        for w, (r, t) in pairs.items():
            router = DispatchRouter(r, es, state.copy(), models, oracle_p)
            refit = None
            if t.partition("@")[0] == RELEARNED:
                refit = _refit(
                    prep.outcomes,
                    params.recovery,
                    say,
                    hist_days + REFIT_AT * eval_days,
                    cfg.refit_all,
                )
            runs.append(run_policy(prep.world, pays, router, retriers[t], rules, seed,
                                   progress(seed, w) if progress else None, label=w,
                                   refit=refit, refit_at_ms=refit_at))  # fmt: skip
    champion = CHAMPION if CHAMPION in pairs else cfg.policies[-1]
    ceiling, bound = None, None
    if FIXED_BASELINE in pairs and champion != FIXED_BASELINE:
        say("hindsight retry ceiling (one clairvoyant retry per declined MIT payment)")
        parts, bounds = [], []
        for seed in cfg.seeds:
            run = next(r for r in runs if r.policy == champion and r.seed == seed)
            ok = hindsight_recoverable(prep.world, payments[seed], run.first_declines, rules, seed)
            parts.append(run.amount * ok)
            fixed_run = next(r for r in runs if r.policy == FIXED_BASELINE and r.seed == seed)
            budget = report.ATTEMPT_BUDGET * float(((fixed_run.attempts - 1) * fixed_run.mit).sum())
            best = best_true_p(prep.world, payments[seed], run.first_declines, rules)
            bounds.append(budget_allocation(run.amount, best, budget, params.max_attempts - 1))
        ceiling, bound = np.concatenate(parts), np.concatenate(bounds)
    comp = report.compare(runs, margin, champion=champion,
                          single=f"{best_single.POLICY_NAME}+{engine.POLICY_NAME}",
                          success_rate=f"{success_rate.POLICY_NAME}+{engine.POLICY_NAME}",
                          oracle=f"{oracle.POLICY_NAME}+{engine.POLICY_NAME}",
                          fixed=FIXED_BASELINE, ceiling=ceiling, bound=bound)  # fmt: skip
    title = (f"Policy evaluation: {cfg.scenario}, history {hist_days:g} days, evaluated days "
             f"{hist_days:g}-{hist_days + eval_days:g}, margin {margin:g} bps")  # fmt: skip
    window = (hist_days, hist_days + eval_days)
    found = incidents.incidents(prep.world, *window)
    say(f"adaptation: {', '.join(i.name for i in found) or 'no event in the window'}")
    adapt = adaptation.analyse(prep.world, payments, runs, found, margin, window,
                               static=best_single.POLICY_NAME, oracle=oracle.POLICY_NAME,
                               champion=champion)  # fmt: skip
    return Evaluation(comp, title, adapt)
