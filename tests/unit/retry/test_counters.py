"""The retry counters from the card's feature windows agree with the exact history count away
from bucket edges, and include the decline being answered."""

from __future__ import annotations

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.features.online import FeatureState
from app.retry.counters import card_counters
from app.retry.rules import Attempt, CardHistory, Counters, counters_at

T0 = 1_767_225_600_000 + 10 * DAY_MS + 30 * 60_000  # half past midnight, mid-month


def outcome(t: int, merchant: str, amount: int, initiator: str, approved: bool,
            attempt: int) -> dict:  # fmt: skip
    return {"card_fingerprint": "c1", "merchant_id": merchant, "amount_minor": amount,
            "initiator": initiator, "approved": approved, "attempt": attempt, "event_time": t,
            "route_id": "acq-eu", "failure_side": "ISSUER", "response_code": "51",
            "bin": "411111", "network": "VISA", "issuer_country": "DE"}  # fmt: skip


def test_card_windows_count_what_the_exact_history_counts():
    card = FeatureState({"card": {}})
    h = CardHistory()
    events = [(T0 - 40 * DAY_MS, "m1", 100, "CIT", False, 2),  # too old for every window
              (T0 - 2 * DAY_MS - 5 * HOUR_MS, "m1", 100, "MIT", False, 2),
              (T0 - 3 * DAY_MS, "m1", 100, "CIT", True, 2),
              (T0 - 5 * HOUR_MS, "m1", 100, "CIT", False, 1),
              (T0 - 5 * HOUR_MS, "m2", 100, "CIT", False, 3),
              (T0 - 2 * HOUR_MS, "m1", 250, "MIT", False, 1),
              (T0, "m1", 100, "MIT", False, 1)]  # the decline being answered  # fmt: skip
    for t, m, amount, ini, ok, k in events:
        card.update_outcome(outcome(t, m, amount, ini, ok, k), "card")
        h.add(Attempt(t, m, amount, ini, ok, k > 1))
    rec = outcome(T0, "m1", 100, "MIT", False, 1)
    got = card_counters(card, rec, T0)
    assert got == counters_at(h, "m1", 100, T0)
    assert got == Counters(declines_24h=4, reattempts_30d_cit=1, reattempts_30d_mit=1,
                           declines_card_merchant_amount_30d=3)  # fmt: skip
