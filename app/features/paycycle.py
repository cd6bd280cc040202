"""Where a request sits in its cardholder's pay cycle: days since the issuer country's last
payday and days to its next one, from the bundled pay calendar (app/data/retry_recovery.json:
`paydays`, `paydays_by_country`; the retry engine reads the same table).

Why the router needs it: insufficient-funds declines rise towards payday and persist until it,
so "declined 3 days ago" means one thing just after a payday and another just before the next.
Without it the router's model, trained on a history whose days sat mostly mid-cycle, was +2.8
points optimistic on first attempts in the days before a payday and -2.7 after it
(evaluate-policy steady, seeds 1-3; README, "Where the remaining closed-loop calibration gap
sits"); with it +1.1 and -0.8, +0.84 in all (was +2.01). A payday starts at 00:00 UTC of its
day of month (days 1..28), as in the retry engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from app.contracts.vocab import DAY_MS
from app.retry.engine import payday_starts, paydays_for

NO_PAYDAY = 31.0  # days reported when a calendar has no payday at all


@lru_cache(maxsize=1_024)
def _bundled(country: str | None) -> tuple[int, ...]:
    return tuple(sorted(paydays_for(country)))


@lru_cache(maxsize=16_384)
def _bounds(paydays: tuple[int, ...], day: int) -> tuple[int, int] | None:
    """(start of the last payday at or before UTC day `day`, start of the next after it)."""
    t = day * DAY_MS
    starts = payday_starts(t, paydays, 2).tolist()
    if not starts:
        return None
    return max(s for s in starts if s <= t), min(s for s in starts if s > t)


def pay_cycle(t_ms: int, country: str | None,
              table: Mapping[str, Any] | None = None) -> tuple[float, float]:  # fmt: skip
    """(days since the last payday, days to the next) at t_ms for an issuer country, under
    `table`'s calendar (the bundled one for None: what the router's features use)."""
    paydays = _bundled(country) if table is None else tuple(sorted(paydays_for(country, table)))
    b = _bounds(paydays, t_ms // DAY_MS)
    if b is None:
        return NO_PAYDAY, NO_PAYDAY
    return (t_ms - b[0]) / DAY_MS, (b[1] - t_ms) / DAY_MS


def payday_starts_for(country: str, t0_ms: int, t1_ms: int) -> list[int]:
    """Every bundled payday start of the country from over a month before t0 to over a month
    after t1 (the offline join's table: its ASOF lookups give the same two figures as
    pay_cycle)."""
    months = int((t1_ms - t0_ms) // (28 * DAY_MS)) + 3
    return payday_starts(t0_ms - 40 * DAY_MS, _bundled(country), months).tolist()
