"""The closed loop for one policy: payments -> decisions -> simulated outcomes -> retries.

Events run in event-time order from a heap: an attempt is decided with the state as of its
time and its outcome lands `latency_ms` later; outcomes teach the router and, when declined,
go to the retrier, whose RETRY becomes the payment's next attempt at its not-before time. The
retrier gets the counters a worker gives it (app.retry.counters, from the router's card
windows, warm with the history).

Every policy sees the same payments and the same luck: the outcome of attempt k of payment n
is drawn from a generator seeded by (seed, n, k) (common random numbers), so differences
between policies are differences of decisions, not of draws, and paired comparisons are tight.

Compliance is checked independently of the policy, at the moment a retry is sent: the network
rules are asked again about the previous decline with the card's exact counters as they stand
then (every attempt of the run in the card's history, not the worker's bucketed windows);
a retry they forbid, one sent before an advised delay, or an SCA retry without 3-D Secure is a
violation.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.contracts.records import next_attempt
from app.contracts.vocab import DAY_MS
from app.evaluation.policies import Router
from app.retry.counters import card_counters
from app.retry.registry import RetryPolicy
from app.retry.rules import Attempt, CardHistory, NetworkRules, counters_at
from app.sim.requests import sample_requests
from app.sim.traffic import payment_times
from app.sim.truth import draw_outcome
from app.sim.world import World

Progress = Callable[[int, int], None]


def eval_payments(world: World, start_day: float, end_day: float, n: int,
                  seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """n first-attempt requests arriving in [start_day, end_day) of the world, by its volume
    curve (arrival times drawn over the horizon, kept inside the window)."""
    rng = np.random.default_rng([seed, 0xE7A1])
    lo, hi = world.start_ms + start_day * DAY_MS, world.start_ms + end_day * DAY_MS
    frac = max((end_day - start_day) / world.days, 1e-3)
    t = payment_times(world, int(n / frac * 1.3) + 100, rng)
    t = t[(t >= lo) & (t < hi)]
    if len(t) < n:
        raise ValueError(f"window [{start_day}, {end_day}) too short for {n} payments")
    t = np.sort(rng.choice(t, n, replace=False))
    return sample_requests(world, t, rng, prefix=f"eval{seed}")


@dataclass(frozen=True)
class AttemptLog:
    """Every attempt of a run in the order it was sent (event time): what adaptation is measured
    from (app.evaluation.adaptation). `p` is the decision's p_approve of the chosen route (NaN
    when the policy gives none); `route` indexes `routes` (the world's route ids)."""

    t_ms: np.ndarray  # int64, when the attempt was sent
    payment: np.ndarray  # int32, index into the run's payments
    attempt: np.ndarray  # int16, 1 = first attempt
    route: np.ndarray  # int16
    p: np.ndarray  # float
    approved: np.ndarray  # bool
    routes: tuple[str, ...]

    def first(self) -> np.ndarray:
        """Rows of first attempts, in payment order (every payment has exactly one)."""
        rows = np.flatnonzero(self.attempt == 1)
        return rows[np.argsort(self.payment[rows], kind="stable")]


EXPLOIT, EXPLORE, PROBE = 0, 1, 2  # how a first attempt's route was chosen (PolicyRun.first_kind)


def _kind(d: dict[str, Any]) -> int:
    """PROBE (route health sent it to a demoted route), EXPLORE (the policy's exploration or
    posterior draw picked another than its best) or EXPLOIT, from the leading reason code."""
    head = (d.get("reason_codes") or [""])[0]
    return PROBE if head.startswith("PROBE") else EXPLORE if head == "EXPLORE" else EXPLOIT


def _all_p(d: dict[str, Any], route_idx: Mapping[str, int], out: np.ndarray) -> None:
    """The decision's p_approve of every candidate into out[route index] (NaN stays where the
    policy gives none)."""
    for s in d.get("scores") or ():
        p = s.get("p_approve")
        if isinstance(p, int | float):
            out[route_idx[s["route_id"]]] = p


def _chosen_p(d: dict[str, Any]) -> float:
    """The decision's p_approve of its chosen route; NaN when absent or not a number."""
    for s in d.get("scores") or ():
        if s["route_id"] == d["chosen_route"]:
            p = s.get("p_approve")
            return float(p) if isinstance(p, int | float) else math.nan
    return math.nan


@dataclass
class PolicyRun:
    """Per-payment results of one policy on one seed (arrays aligned with the payments), with
    every attempt (`log`) and the router's alerts."""

    policy: str
    seed: int
    amount: np.ndarray
    first_approved: np.ndarray
    approved: np.ndarray
    attempts: np.ndarray
    fees: np.ndarray
    violations: np.ndarray
    mit: np.ndarray
    # payment index -> its declined first attempt (for the hindsight retry ceiling)
    first_declines: dict[int, dict[str, Any]] = field(default_factory=dict)
    log: AttemptLog | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the router's, event-time order
    # scheduled MIT retries (no cascade, no step-up): the retrier's p_recover at the time it
    # chose, and whether that retry approved. An argmax over noisy candidates is optimistic
    # where it chooses; this pair measures by how much.
    retry_p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    retry_ok: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # per payment, its first attempt's decision: p_approve of every candidate by world route
    # index (NaN: not a candidate or no p) and how the route was chosen (EXPLOIT / EXPLORE /
    # PROBE): where a router loses to the oracle (app.evaluation.regret) is read from these
    first_p: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    first_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))


Refit = Callable[[RetryPolicy, list[dict[str, Any]]], RetryPolicy]


def run_policy(world: World, payments: list[dict[str, Any]], router: Router,
               retrier: RetryPolicy, rules: NetworkRules, seed: int,
               progress: Progress | None = None, max_attempts: int = 16,
               label: str | None = None, refit: Refit | None = None,
               refit_at_ms: int | None = None) -> PolicyRun:  # fmt: skip
    """Run every payment through router + retrier; returns per-payment results, named `label`
    (default router+retrier).

    `refit(retrier, outcomes)`, when given, replaces the retrier once, at the first event at or
    after `refit_at_ms`, with what it returns from every outcome the run has seen by then (the
    production loop's retrain on the worker's own retries, app.evaluation.run's
    engine_relearned).

    max_attempts is a guard against a retrier that never stops, not a policy: the engine and
    the fixed schedule stop long before it."""
    n = len(payments)
    amount = np.array([p["amount_minor"] for p in payments], float)
    first = np.zeros(n, bool)
    approved = np.zeros(n, bool)
    attempts = np.zeros(n, np.int32)
    fees = np.zeros(n)
    last_fee = np.zeros(n)  # fee of each payment's latest attempt
    violations = np.zeros(n, np.int32)
    mit = np.array([p["initiator"] == "MIT" for p in payments])
    histories: dict[str, CardHistory] = {}
    first_declines: dict[int, dict[str, Any]] = {}
    seq = itertools.count()
    # the attempt log in plain lists (the outcome is drawn when the attempt is sent)
    route_idx = {r: k for k, r in enumerate(world.route_ids)}
    lt: list[int] = []
    lpay: list[int] = []
    latt: list[int] = []
    lroute: list[int] = []
    lp: list[float] = []
    lok: list[bool] = []
    first_p = np.full((n, len(world.route_ids)), np.nan)
    first_kind = np.zeros(n, np.int8)
    # (time, tiebreak, kind, payment index, request, previous outcome / decision)
    heap: list[tuple[int, int, int, int, dict[str, Any], Any]] = [
        (p["event_time"], next(seq), 0, i, p, None) for i, p in enumerate(payments)
    ]
    heapq.heapify(heap)
    done = 0
    priced: dict[tuple[int, int], float] = {}  # (payment, attempt) -> p_recover it was sent at
    rp: list[float] = []
    rok: list[bool] = []
    seen: list[dict[str, Any]] = []  # the outcomes so far, when a refit is due
    while heap:
        t, _, kind, i, req, extra = heapq.heappop(heap)
        if refit is not None and refit_at_ms is not None and t >= refit_at_ms:
            retrier, refit = refit(retrier, seen), None
        if kind == 0:  # an attempt is sent
            if extra is not None:
                violations[i] += _violations(rules, extra, req, histories)
            d = router.decide(req)
            route = d["chosen_route"]
            fee = next(c["fee_minor"] for c in req["candidates"] if c["route_id"] == route)
            rng = np.random.default_rng([seed, i, req["attempt"]])
            out = draw_outcome(world, req, route, t, rng)
            attempts[i] += 1
            fees[i] += fee
            last_fee[i] = fee  # what another attempt on this route would cost
            heapq.heappush(heap, (out["event_time"], next(seq), 1, i, req, out))
            lt.append(t)
            lpay.append(i)
            latt.append(req["attempt"])
            lroute.append(route_idx[route])
            lp.append(_chosen_p(d))
            lok.append(out["approved"])
            if req["attempt"] == 1:
                _all_p(d, route_idx, first_p[i])
                first_kind[i] = _kind(d)
            continue
        out = extra  # an outcome arrives
        router.observe(out)
        if refit is not None:
            seen.append(out)
        h = histories.setdefault(req["card_fingerprint"], CardHistory())
        h.add(Attempt(t, req["merchant_id"], req["amount_minor"], req["initiator"],
                      out["approved"], req["attempt"] > 1))  # fmt: skip
        p_sent = priced.pop((i, req["attempt"]), None)
        if p_sent is not None:
            rp.append(p_sent)
            rok.append(out["approved"])
        if req["attempt"] == 1:
            first[i] = out["approved"]
            if not out["approved"]:
                first_declines[i] = out
        if out["approved"]:
            approved[i] = True
        else:
            fees[i] += rules.decline_fee(out)  # the network's, for declines of some kinds
            rd = retrier.after_decline(out, card_counters(router.features, out, t), t,
                                       float(last_fee[i]))  # fmt: skip
            nxt = next_attempt(req, rd, out["route_id"], out["response_code"])
            if nxt is not None and attempts[i] < max_attempts:
                scheduled = rd.get("avoid_route") is None and not rd.get("three_ds")
                if mit[i] and scheduled and rd.get("p_recover") is not None:
                    priced[(i, nxt["attempt"])] = float(rd["p_recover"])
                heapq.heappush(heap, (nxt["event_time"], next(seq), 0, i, nxt, out))
                continue
        done += 1
        if progress is not None and done % 2000 == 0:
            progress(done, n)
    if progress is not None:
        progress(n, n)
    log = AttemptLog(np.array(lt, np.int64), np.array(lpay, np.int32), np.array(latt, np.int16),
                     np.array(lroute, np.int16), np.array(lp, float), np.array(lok, bool),
                     tuple(world.route_ids))  # fmt: skip
    return PolicyRun(label or f"{router.name}+{retrier.name}", seed, amount, first, approved,
                     attempts, fees, violations, mit, first_declines, log,
                     list(getattr(router, "alerts", [])), np.array(rp, float),
                     np.array(rok, bool), first_p, first_kind)  # fmt: skip


def _violations(rules: NetworkRules, prev: dict[str, Any], req: dict[str, Any],
                histories: dict[str, CardHistory]) -> int:  # fmt: skip
    """Rule breaches of sending `req` now as a retry of the declined outcome `prev`."""
    t = req["event_time"]
    h = histories.get(req["card_fingerprint"], CardHistory())
    v = rules.check(prev, counters_at(h, req["merchant_id"], req["amount_minor"], t), t)
    return (
        int(not v.allowed) + int(t < v.not_before_ms) + int(v.require_3ds and not req["three_ds"])
    )
