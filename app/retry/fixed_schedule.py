"""The fixed retry schedule: the dunning schedule of billing systems (+1 day, +3 days, +7 days
after the first decline), the baseline the retry engine is measured against.

It is rule-aware so it is a fair, compliant baseline: it skips a retry the network rules forbid
and waits out an advised delay, but knows nothing of paydays, SCA step-ups or route-side
failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.contracts.vocab import HOUR_MS
from app.retry.rules import Counters, NetworkRules

POLICY_NAME = "fixed_schedule"
FIXED_DELAYS_H: tuple[float, ...] = (24.0, 72.0, 168.0)
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
            "three_ds": False, "p_recover": None, "expected_value": None,
            "propensity": 1.0, "model_version": None}  # fmt: skip
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
