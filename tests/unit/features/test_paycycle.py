"""The pay-cycle features: days since the issuer country's last payday and to its next, from
the bundled calendar (1st and 15th)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.contracts.vocab import DAY_MS
from app.features.paycycle import pay_cycle, payday_starts_for


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("when", "since", "to"), [
    (ms(2026, 1, 26, 12), 11.5, 5.5),  # 15 Jan -> 1 Feb
    (ms(2026, 2, 1), 0.0, 14.0),  # a payday starts at 00:00 UTC
    (ms(2026, 2, 14, 23, 59, 59), 14.0 - 1 / 86_400, 1 / 86_400),
    (ms(2026, 3, 10, 6), 9.25, 4.75),  # February's 28 days
    (ms(2026, 12, 20), 5.0, 12.0),  # across a year end
])  # fmt: skip
def test_days_since_and_to_payday(when, since, to):
    s, t = pay_cycle(when, "FR")
    assert s == pytest.approx(since) and t == pytest.approx(to)


def test_the_offline_table_covers_its_range_with_the_same_paydays():
    t0, t1 = ms(2026, 1, 5), ms(2026, 3, 2)
    starts = payday_starts_for("FR", t0, t1)
    assert starts == sorted(set(starts)) and starts[0] <= t0 - 14 * DAY_MS
    assert starts[-1] >= t1 + 14 * DAY_MS
    inside = [datetime.fromtimestamp(s / 1000, tz=UTC) for s in starts if t0 <= s <= t1]
    assert [(d.month, d.day) for d in inside] == [(1, 15), (2, 1), (2, 15), (3, 1)]
    assert all(d.hour == d.minute == 0 for d in inside)
    # the offline ASOF lookups (last start <= t, first start > t) agree with pay_cycle
    t = ms(2026, 2, 20, 8)
    last = max(s for s in starts if s <= t)
    nxt = min(s for s in starts if s > t)
    assert pay_cycle(t, "FR") == pytest.approx(((t - last) / DAY_MS, (nxt - t) / DAY_MS))
