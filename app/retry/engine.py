"""The retry engine: after a decline, network rules first, then value against cost.

1. Network rules (app.retry.rules) are hard constraints: STOP, or RETRY not before a
   time, with or without 3-D Secure.
2. Technical failures on the route's side cascade at once to another route (avoid_route).
3. SCA soft declines are answered by a 3-D Secure step-up, at once, never a blind retry.
4. Otherwise the engine weighs candidate retry times by p_recover x value - attempt cost -
   (1 - p_recover) x the network's fee for such a decline (rules data: decline_fees),
   discounting waiting, and retries at the best one if it is worth it. p_recover comes from
   the recovery model when one is loaded (app.retry.recovery_model: a calibrated GBDT over the
   decline, the card's history and the candidate time, which also proposes the next UTC
   midnights), else from the table (app/data/retry_recovery.json: priors by decline class x
   delay, paydays): the table is the fallback, never a second engine. Customer-initiated
   payments are not retried later (the customer has left the checkout): only cascades and
   step-ups apply to them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.retry.rules import Counters, NetworkRules
from app.routing.choice import uniform_draws


class RecoveryScorer(Protocol):
    """A compiled or native recovery model: rows of app.retry.recovery_model.FEATURES -> p."""

    @property
    def label(self) -> str: ...  # name/version, written to each RetryDecision it priced

    def predict(self, x: np.ndarray) -> np.ndarray: ...


POLICY_NAME = "engine"
MIDNIGHT_SLACK_MS = 5 * 60_000  # a midnight candidate is sent 5 min after 00:00 UTC
# the hindsight ceiling's grid (app.evaluation.ceiling) up to a week, and 2-4 weeks
MODEL_EXTRA_HOURS: tuple[float, ...] = (0.5, 2, 6, 12, 48, 96, 120, 144, 336, 504, 672)
RECOVERY = Path(__file__).resolve().parents[1] / "data" / "retry_recovery.json"


@dataclass(frozen=True)
class RetryParams:
    margin_bps: float = 2000.0  # value of an approval as bps of the amount (as EV routing)
    # one more attempt's fee when the declined attempt's route fee is unknown (the worker
    # lost the decision's estimate: a rebalance); the route's own fee otherwise
    attempt_cost_minor: float = 10.0
    wait_discount_per_day: float = 0.01  # value lost per day of waiting (churn, working capital)
    max_attempts: int = 4
    # the recovery table (retry_recovery.json format); None = the bundled priors. A table
    # fitted on your own retry history (`authpilot fit-retry`) replaces them.
    recovery: Mapping[str, Any] | None = field(default=None, compare=False)
    # the learned recovery model; None = the table above
    model: RecoveryScorer | None = field(default=None, compare=False)
    # share of scheduled retries sent at a time drawn uniformly from the worthwhile candidates
    # (expected value > 0), with its exact propensity: what retraining and off-policy reports
    # need to see the waits the best-EV rule would never choose
    explore: float = 0.0
    # the operator's own cost of one more attempt, on top of the route's fee (support load,
    # customer friction): the stop rule's knob that trades value for attempts
    attempt_surcharge_minor: float = 0.0


@cache
def _recovery() -> dict[str, Any]:
    return json.loads(RECOVERY.read_text())


def load_recovery(path: str | Path | None,
                  pay_calendar: str | Path | None = None) -> Mapping[str, Any]:  # fmt: skip
    """A recovery table from a file (the bundled priors for None), checked for its keys, with
    an optional pay calendar file ({issuer country: [days of month]}) as its
    paydays_by_country: paydays are market knowledge, kept apart from fitted recovery rates."""
    table: dict[str, Any] = dict(_recovery())
    if path is not None:
        table = json.loads(Path(path).read_text())
        missing = {"paydays", "delays_hours", "classes"} - set(table)
        if missing:
            raise ValueError(f"{path}: not a recovery table, missing {sorted(missing)}")
    if pay_calendar is not None:
        cal = {k: v for k, v in json.loads(Path(pay_calendar).read_text()).items()
               if not k.startswith("_")}  # fmt: skip
        bad = [k for k, v in cal.items()
               if not (isinstance(v, list) and v and all(isinstance(d, int) and 1 <= d <= 28
                                                         for d in v))]  # fmt: skip
        if bad:
            raise ValueError(f"{pay_calendar}: paydays must be lists of days 1..28 ({bad})")
        table["paydays_by_country"] = cal
    return table


def decline_class(code: str, table: Mapping[str, Any] | None = None) -> str:
    for name, c in (table or _recovery())["classes"].items():
        if code in c["codes"]:
            return name
    return "other_soft"


@lru_cache(maxsize=4_096)
def _month_paydays(paydays: tuple[int, ...], year: int, month: int) -> tuple[int, ...]:
    """Start (UTC epoch ms) of each payday of one month."""
    return tuple(int(datetime(year, month, d, tzinfo=UTC).timestamp() * 1000)
                 for d in paydays if 1 <= d <= 28)  # fmt: skip


def payday_starts(t_ms: int, paydays: Sequence[int], months: int = 3) -> np.ndarray:
    """Payday starts from the month before t to `months` months after it, sorted."""
    d = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    key = tuple(sorted(paydays))
    out: list[int] = []
    for k in range(-1, months + 1):
        y, m = divmod(d.year * 12 + d.month - 1 + k, 12)
        out += _month_paydays(key, y, m + 1)
    return np.array(out, np.int64)


def paydays_for(country: str | None, table: Mapping[str, Any] | None = None) -> set[int]:
    """Paydays (days of month) of a card's issuer country: the table's calendar for that
    country, its default `paydays` otherwise."""
    table = table or _recovery()
    return set(table.get("paydays_by_country", {}).get(country or "", table["paydays"]))


def crosses_payday(t0_ms: int, t1_ms: int, table: Mapping[str, Any] | None = None,
                   country: str | None = None) -> bool:  # fmt: skip
    """True when a payday of the country's calendar starts in (t0, t1]."""
    d0 = datetime.fromtimestamp(t0_ms / 1000, tz=UTC).date()
    d1 = datetime.fromtimestamp(t1_ms / 1000, tz=UTC).date()
    paydays = paydays_for(country, table)
    d = d0 + timedelta(days=1)
    while d <= d1:
        if d.day in paydays:
            return True
        d += timedelta(days=1)
    return False


def next_payday_ms(t_ms: int, table: Mapping[str, Any] | None = None,
                   country: str | None = None) -> int:  # fmt: skip
    """When funds land after t: the start of the country's next payday plus the table's
    settlement hours."""
    table = table or _recovery()
    paydays = paydays_for(country, table)
    d = datetime.fromtimestamp(t_ms / 1000, tz=UTC).date() + timedelta(days=1)
    while d.day not in paydays:
        d += timedelta(days=1)
    start = datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000
    return int(start + table.get("payday_settle_hours", 0) * HOUR_MS)


def delay_bucket(hours: float, table: Mapping[str, Any] | None = None) -> int:
    """Index of the table's delay a wait of `hours` falls in (the largest one not above it)."""
    delays = (table or _recovery())["delays_hours"]
    return max(j for j, h in enumerate(delays) if h <= max(hours, 0))


def p_recover(code: str, decline_ms: int, retry_ms: int, attempt: int = 1,
              table: Mapping[str, Any] | None = None,
              country: str | None = None) -> float:  # fmt: skip
    """Probability that a retry at retry_ms approves, from the decline class table.

    `attempt` is the attempt just declined: each earlier declined attempt of the payment
    multiplies the estimate by the class's repeat_decay (a cause that survived a retry is
    likely to survive the next one)."""
    table = table or _recovery()
    c = table["classes"][decline_class(code, table)]
    p = c["p"][delay_bucket((retry_ms - decline_ms) / HOUR_MS, table)]
    if c["payday_boost"] and crosses_payday(decline_ms, retry_ms, table, country):
        p += c["payday_boost"]
    p *= c.get("repeat_decay", 1.0) ** max(attempt - 1, 0)
    return min(p, 0.99)


def decide_retry(outcome: dict[str, Any], counters: Counters, rules: NetworkRules,
                 params: RetryParams, now_ms: int,
                 attempt_fee: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A RetryDecision body for one declined outcome.

    A retry costs `attempt_fee`, the fee of the route the declined attempt went through (the
    router usually picks it again; a cascade's other route is close), or
    params.attempt_cost_minor when the worker does not know it, plus the operator's
    attempt_surcharge_minor; and, if declined the same way, the network's fee for such a
    decline."""
    t = outcome["event_time"]
    code = outcome["response_code"]
    base = {"request_id": outcome["request_id"], "payment_id": outcome["payment_id"],
            "attempt": outcome["attempt"], "decided_at": now_ms, "route_id": None,
            "avoid_route": None, "three_ds": False, "p_recover": None,
            "expected_value": None, "propensity": 1.0, "model_version": None}  # fmt: skip

    table = params.recovery or _recovery()

    def stop(*reasons: str) -> dict[str, Any]:
        return {**base, "action": "STOP", "not_before": t, "reason_codes": list(reasons)}

    if outcome["attempt"] >= params.max_attempts:
        return stop(f"MAX_ATTEMPTS:{params.max_attempts}")
    verdict = rules.check(outcome, counters)
    reasons = list(verdict.reasons)
    if not verdict.allowed:
        return stop(*reasons)
    value = outcome["amount_minor"] * params.margin_bps / 10000.0
    fee_of_route = params.attempt_cost_minor if attempt_fee is None else attempt_fee
    cost = fee_of_route + params.attempt_surcharge_minor
    if outcome["failure_side"] == "ROUTE":
        p = p_recover(code, t, t, table=table)
        return {**base, "action": "RETRY", "not_before": max(verdict.not_before_ms, t),
                "avoid_route": outcome["route_id"], "p_recover": p,
                "expected_value": p * value - cost,
                "reason_codes": [*reasons, f"CASCADE:{outcome['route_id']}"]}  # fmt: skip
    if verdict.require_3ds:
        return {**base, "action": "RETRY", "not_before": verdict.not_before_ms, "three_ds": True,
                "reason_codes": reasons}  # fmt: skip
    if outcome.get("initiator") != "MIT":
        return stop(*reasons, "CIT_NO_DELAYED_RETRY")
    best: tuple[float, int, float] | None = None
    k = outcome["attempt"]
    country = outcome.get("issuer_country")
    candidates = [t + int(h * HOUR_MS) for h in table["delays_hours"]]
    if params.model is not None or table["classes"][decline_class(code, table)]["payday_boost"]:
        candidates.append(next_payday_ms(t, table, country))  # right after the money lands
    if params.model is not None:  # a model prices any time: the finer grid and the next UTC
        # midnights (an issuer's day-level verdict may renew then)
        candidates += [t + int(h * HOUR_MS) for h in MODEL_EXTRA_HOURS]
        candidates += [(t // DAY_MS + d) * DAY_MS + MIDNIGHT_SLACK_MS for d in (1, 2, 3)]
    whens = sorted({max(c, verdict.not_before_ms) for c in candidates})
    if params.model is not None:
        from app.retry.recovery_model import featurizer

        x = featurizer(table).rows(outcome, counters.card, whens)
        ps = [min(float(v), 0.99) for v in params.model.predict(x)]
        source = "MODEL"
        base["model_version"] = params.model.label
    else:
        ps = [p_recover(code, t, w, k, table, country) for w in whens]
        source = "TABLE"
    worth: list[tuple[float, int, float]] = []  # (ev, when, p) of the worthwhile candidates
    fee = rules.decline_fee(outcome)  # the network's, if the retry is declined the same way
    for when, p in zip(whens, ps, strict=True):
        wait_days = (when - t) / (24 * HOUR_MS)
        ev = (p * value * (1 - params.wait_discount_per_day * wait_days)
              - cost - (1 - p) * fee)  # fmt: skip
        if ev > 0:
            worth.append((ev, when, p))
        if best is None or ev > best[0]:
            best = (ev, when, p)
    assert best is not None
    ev, when, p = best
    if ev <= 0:
        return stop(*reasons, f"NOT_WORTH_IT:ev={ev:.1f}", f"RECOVERY:{source}")
    propensity, explored = 1.0, []
    if params.explore > 0:
        u, v = uniform_draws(outcome["request_id"])
        m = len(worth)
        if u < params.explore:
            ev, when, p = worth[min(int(v * m), m - 1)]
            explored = ["EXPLORE"]
        propensity = params.explore / m + (1.0 - params.explore) * ((ev, when, p) == best)
    hours = (when - t) / HOUR_MS
    payday = ["PAYDAY"] if crosses_payday(t, when, table, country) else []
    return {**base, "action": "RETRY", "not_before": when, "p_recover": p, "expected_value": ev,
            "propensity": propensity,
            "reason_codes": [*reasons, f"DELAY_{hours:.0f}H:p={p:.2f}", *payday,
                             f"RECOVERY:{source}", *explored]}  # fmt: skip
