"""A hindsight ceiling for retries: how much declined value any retry policy could recover.

For every payment whose first attempt was declined, look into the future the simulator holds:
try one retry at each candidate time within the horizon (minutes, hours, then every day) on
each candidate route, with the very draws attempt 2 of that payment gets in the closed loop
(common random numbers), and keep it as recoverable if any compliant (time, route) approves.
No causal policy can recover a payment this clairvoyant retrier cannot reach with its draws,
so the ceiling says how much of the gap to a perfect retrier a target leaves: a target above
it is out of reach in that world, whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from app.contracts.vocab import HOUR_MS
from app.retry.rules import Counters, NetworkRules
from app.sim.truth import draw_outcome, p_approve
from app.sim.world import World

CANDIDATE_HOURS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 6.0, 12.0) + tuple(
    24.0 * d for d in range(1, 31)
)


def retries_to_try(payments: list[dict[str, Any]], first_declines: dict[int, dict[str, Any]],
                   rules: NetworkRules, hours: tuple[float, ...] = CANDIDATE_HOURS,
                   only_mit: bool = True,
                   ) -> Iterator[tuple[int, dict[str, Any], list[dict[str, Any]]]]:  # fmt: skip
    """Per declined payment a compliant retry may follow: (payment index, its request, one
    second attempt per candidate time, at the rules' earliest time and with the 3-D Secure
    they require)."""
    for i, out in first_declines.items():
        req = payments[i]
        if only_mit and req["initiator"] != "MIT":
            continue
        verdict = rules.check(out, Counters())
        if not verdict.allowed:
            continue
        t0 = out["event_time"]
        tds = bool(req["three_ds"] or verdict.require_3ds)
        yield i, req, [dict(req, attempt=2, three_ds=tds,
                            event_time=max(t0 + int(h * HOUR_MS), verdict.not_before_ms))
                       for h in hours]  # fmt: skip


def hindsight_recoverable(world: World, payments: list[dict[str, Any]],
                          first_declines: dict[int, dict[str, Any]], rules: NetworkRules,
                          seed: int, hours: tuple[float, ...] = CANDIDATE_HOURS,
                          only_mit: bool = True) -> np.ndarray:  # fmt: skip
    """Per payment: True when one clairvoyant retry of its declined first attempt approves."""
    ok = np.zeros(len(payments), bool)
    for i, req, retries in retries_to_try(payments, first_declines, rules, hours, only_mit):
        ok[i] = any(
            draw_outcome(world, r, c["route_id"], r["event_time"],
                         np.random.default_rng([seed, i, 2]))["approved"]
            for r in retries for c in req["candidates"]
        )  # fmt: skip
    return ok


def best_true_p(world: World, payments: list[dict[str, Any]],
                first_declines: dict[int, dict[str, Any]], rules: NetworkRules,
                hours: tuple[float, ...] = CANDIDATE_HOURS,
                only_mit: bool = True) -> dict[int, float]:  # fmt: skip
    """Per declined payment a retry may follow: the highest true approval probability of one
    retry at any candidate time within the horizon on any candidate route (the marginal p,
    before anything the declines reveal)."""
    return {i: max(p_approve(world, r, c["route_id"]) for r in retries for c in req["candidates"])
            for i, req, retries in retries_to_try(payments, first_declines, rules, hours,
                                                  only_mit)}  # fmt: skip


def budget_allocation(amount: np.ndarray, p_best: dict[int, float], budget: float,
                      retries: int) -> np.ndarray:  # fmt: skip
    """Per payment (aligned with `amount`), what the bound below recovers from it: the whole
    chain, a fraction of it for the payment the budget ends in, 0 for the rest. Summed by the
    class of the first decline it says where a causal retrier's headroom is.

    The bound: the most declined value any causal retrier recovers in expectation with at
    most `retries` retries per payment and `budget` retry attempts in expectation.

    Each retry of payment i approves with probability at most p_i = its best true p (in the
    simulator every dependence between attempts is a persistent cause: a decline only makes
    the next attempt less likely), so its k-th retry adds at most a_i p_i (1-p_i)^(k-1) value
    for (1-p_i)^(k-1) expected attempts: the same ratio a_i p_i for every k. The relaxed
    problem is then a fractional knapsack solved by taking payments' whole retry chains in
    decreasing a_i p_i until the budget is spent. Unlike the hindsight ceiling, which sees
    every draw of the horizon (one per persistent day), no policy can beat this in expectation,
    so it says how much of the ceiling's gain a target can ask for at that budget. (p_i is the
    best over the ceiling's grid of times, CANDIDATE_HOURS: an hour between its points could
    be a little better, so the bound is exact on that grid and close off it.)"""
    out = np.zeros(len(amount))
    if not p_best:
        return out
    idx = np.fromiter(p_best, np.int64, len(p_best))
    p = np.fromiter(p_best.values(), float, len(p_best))
    a = amount[idx]
    q = 1.0 - p
    chain_w = np.where(q < 1.0, (1.0 - q**retries) / np.maximum(p, 1e-12), float(retries))
    chain_v = a * (1.0 - q**retries)
    order = np.argsort(-(a * p), kind="stable")
    w, v = chain_w[order], chain_v[order]
    cum = np.cumsum(w)
    full = int(np.searchsorted(cum, budget, side="right"))
    out[idx[order[:full]]] = v[:full]
    if full < len(w):
        left = budget - (cum[full - 1] if full else 0.0)
        out[idx[order[full]]] = v[full] * max(left, 0.0) / w[full]
    return out


def budget_bound(amount: np.ndarray, p_best: dict[int, float], budget: float,
                 retries: int) -> float:  # fmt: skip
    """The causal bound in total (budget_allocation summed)."""
    return float(budget_allocation(amount, p_best, budget, retries).sum())
