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

from functools import lru_cache

from app.contracts.vocab import DAY_MS
from app.retry.engine import payday_starts, paydays_for


@lru_cache(maxsize=16_384)
def _bounds(country: str, day: int) -> tuple[int, int]:
    """(start of the last payday at or before UTC day `day`, start of the next after it)."""
    t = day * DAY_MS
    starts = payday_starts(t, sorted(paydays_for(country)), 2).tolist()
    return max(s for s in starts if s <= t), min(s for s in starts if s > t)


def pay_cycle(t_ms: int, country: str) -> tuple[float, float]:
    """(days since the last payday, days to the next) at t_ms for an issuer country."""
    last, nxt = _bounds(country, t_ms // DAY_MS)
    return (t_ms - last) / DAY_MS, (nxt - t_ms) / DAY_MS


def payday_starts_for(country: str, t0_ms: int, t1_ms: int) -> list[int]:
    """Every payday start of the country from before t0 to after t1 (the offline join's table:
    its ASOF lookups give the same two figures as pay_cycle)."""
    out: set[int] = set()
    day = t0_ms // DAY_MS - 40
    while day * DAY_MS <= t1_ms + 40 * DAY_MS:
        out.update(payday_starts(day * DAY_MS, sorted(paydays_for(country)), 1).tolist())
        day += 28
    return sorted(out)
