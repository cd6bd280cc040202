"""The policies authpilot is measured against, each runnable by the worker and the evaluator.

- best single route: what most merchants do today, one acquirer per merchant (the one with the
  best approval rate in their history), no per-transaction choice;
- fixed retry schedule: the dunning schedule of billing systems (+1 day, +3 days, +7 days after
  the first decline), rule-aware so it is a fair, compliant baseline: it skips a retry the
  network rules forbid and waits out an advised delay, but knows nothing of paydays, SCA
  step-ups or route-side failures;
- oracle: the simulator's all-knowing router (true approval probabilities), the ceiling.

Success-rate routing is app.routing.success_rate (the worker's fallback as well).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.retry.rules import HOUR_MS, Counters, NetworkRules
from app.routing.choice import decision

BEST_SINGLE = "best_single_route"
FIXED_SCHEDULE = "fixed_schedule"
ORACLE = "oracle"
FIXED_DELAYS_H: tuple[float, ...] = (24.0, 72.0, 168.0)


def best_single_routes(merchant: Sequence[str], route: Sequence[str],
                       approved: Sequence[bool]) -> dict[str, str]:  # fmt: skip
    """Each merchant's route with the highest approval rate in a history (ties: more traffic)."""
    stats: dict[tuple[str, str], list[int]] = {}
    for m, r, a in zip(merchant, route, approved, strict=True):
        s = stats.setdefault((m, r), [0, 0])
        s[0] += 1
        s[1] += bool(a)
    best: dict[str, tuple[float, int, str]] = {}
    for (m, r), (n, ok) in stats.items():
        key = (ok / n, n, r)
        if m not in best or key > best[m]:
            best[m] = key
    return {m: v[2] for m, v in best.items()}


def _fixed_route_decision(req: dict[str, Any], chosen: int, policy: str,
                          reasons: list[str]) -> dict[str, Any]:  # fmt: skip
    scores = [{"route_id": c["route_id"], "p_approve": float("nan"), "score": float(i == chosen),
               "fee_minor": c["fee_minor"], "samples": 0, "eliminated": False}
              for i, c in enumerate(req["candidates"])]  # fmt: skip
    return decision(req, chosen, scores, 1.0, policy, None, reasons)


def best_single_decide(req: dict[str, Any], routes: Mapping[str, str]) -> dict[str, Any]:
    """The merchant's one route; its first candidate when that route is not offered (e.g.
    excluded after a route-side failure), so a cascade still has somewhere to go."""
    ids = [c["route_id"] for c in req["candidates"]]
    want = routes.get(req["merchant_id"])
    if want in ids:
        return _fixed_route_decision(req, ids.index(want), BEST_SINGLE, [f"MERCHANT_ROUTE:{want}"])
    return _fixed_route_decision(req, 0, BEST_SINGLE, [f"MERCHANT_ROUTE_UNAVAILABLE:{want}"])


def oracle_decide(req: dict[str, Any], p_true: Sequence[float],
                  margin_bps: float) -> dict[str, Any]:  # fmt: skip
    """Highest true expected value p x margin - fee over the candidates (p from the simulator,
    aligned with req['candidates'])."""
    value = req["amount_minor"] * margin_bps / 10000.0
    ev = [p * value - c["fee_minor"] for p, c in zip(p_true, req["candidates"], strict=True)]
    chosen = max(range(len(ev)), key=lambda i: (ev[i], -i))
    d = _fixed_route_decision(req, chosen, ORACLE, ["ORACLE_TRUE_EV"])
    for s, p, e in zip(d["scores"], p_true, ev, strict=True):
        s["p_approve"], s["score"] = float(p), float(e)
    return d


DUNNED = frozenset({"MIT"})


def fixed_schedule_retry(outcome: dict[str, Any], counters: Counters, rules: NetworkRules,
                         now_ms: int, delays_h: Sequence[float] = FIXED_DELAYS_H,
                         initiators: frozenset[str] = DUNNED) -> dict[str, Any]:  # fmt: skip
    """A RetryDecision body: retry after delays_h[attempt-1] hours while the rules allow it.

    Only merchant-initiated payments are retried later by default: a customer at checkout has
    left by tomorrow, so a dunning schedule for them would be fiction."""
    t = outcome["event_time"]
    k = outcome["attempt"]
    base = {"request_id": outcome["request_id"], "payment_id": outcome["payment_id"],
            "attempt": k, "decided_at": now_ms, "route_id": None, "avoid_route": None,
            "three_ds": False, "p_recover": None, "expected_value": None}  # fmt: skip
    verdict = rules.check(outcome, counters)
    if outcome.get("initiator", "CIT") not in initiators:
        return {**base, "action": "STOP", "not_before": t, "reason_codes": ["FIXED_NOT_DUNNED"]}
    if k > len(delays_h):
        return {**base, "action": "STOP", "not_before": t, "reason_codes": ["FIXED_SCHEDULE_END"]}
    if not verdict.allowed:
        return {**base, "action": "STOP", "not_before": t, "reason_codes": list(verdict.reasons)}
    when = max(t + int(delays_h[k - 1] * HOUR_MS), verdict.not_before_ms)
    return {**base, "action": "RETRY", "not_before": when,
            "reason_codes": [*verdict.reasons, f"FIXED_{delays_h[k - 1]:g}H"]}  # fmt: skip
