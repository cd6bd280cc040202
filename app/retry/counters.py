"""The counters the network retry limits are written in, from a card's feature windows.

One implementation for the worker's retry step and the evaluator's retriers: the card x
merchant and card x merchant x amount rings (30 daily buckets) and the card ring (24 hourly
buckets) that the model's card features are read from (app.features.definitions), so a retry
decision and the features describe the same history. The windows are at bucket granularity:
the 30-day counts cover the last 29-30 days, the 24-hour count the last 23-24 hours.
"""

from __future__ import annotations

from typing import Any

from app.features.online import FeatureState
from app.retry.rules import CardActivity, Counters


def card_counters(card: FeatureState, rec: dict[str, Any], t: int) -> Counters:
    """Counters for a retry of the payment of `rec` (a declined outcome) as of time t."""
    c = card.card_window("card", rec, t)
    cm = card.card_window("card_merchant", rec, t)
    cma = card.card_window("card_merchant_amount", rec, t)
    return Counters(
        declines_24h=c["n"] - c["ok"],
        reattempts_30d_cit=cm["reatt_cit"],
        reattempts_30d_mit=cm["reatt_mit"],
        declines_card_merchant_amount_30d=cma["n"] - cma["ok"],
        card=CardActivity(float(c["n"]), float(c["ok"]), float(cm["n"]), float(cm["ok"])),
    )
