"""Calendar terms of the truth: hour of day, weekday, and where a moment sits between paydays.

Vectorized over epoch-millisecond arrays (UTC). Kept apart from truth.py because the traffic
sampler needs the same calendar for arrival volume.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.contracts.vocab import DAY_MS, HOUR_MS


def hour_weekday(t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC hour 0-23 and weekday 0-6 (Monday = 0; 1970-01-01 was a Thursday = 3)."""
    t = np.asarray(t_ms, np.int64)
    return (t // HOUR_MS) % 24, (t // DAY_MS + 3) % 7


def payday_phase(t_ms: np.ndarray, paydays: Sequence[int]) -> np.ndarray:
    """Fraction of the way from the last payday to the next one, in [0, 1).

    0 right after a payday (funds just arrived), close to 1 the day before the next. Paydays are
    days of month (1..28, so they exist in every month); the gap from the last payday of a month
    to the first of the next uses the real month length.
    """
    t = np.asarray(t_ms, np.int64)
    if t.size == 1:  # the closed-loop path: datetime arithmetic is 20x cheaper than numpy here
        return np.full(t.shape, _phase1(int(t.reshape(-1)[0]), paydays))
    month = t.astype("datetime64[ms]").astype("datetime64[M]")
    m0 = month.astype("datetime64[ms]").astype(np.int64)
    m1 = (month + 1).astype("datetime64[ms]").astype(np.int64)
    mprev = (month - 1).astype("datetime64[ms]").astype(np.int64)
    day = (t - m0) / DAY_MS  # 0-based fractional day of month
    offs = np.array(sorted(d - 1 for d in paydays), float)
    k = np.searchsorted(offs, day, side="right") - 1
    last = np.where(k >= 0, offs[np.clip(k, 0, None)], offs[-1] - (m0 - mprev) / DAY_MS)
    nxt = np.where(
        k + 1 < len(offs), offs[np.clip(k + 1, 0, len(offs) - 1)], (m1 - m0) / DAY_MS + offs[0]
    )
    return (day - last) / (nxt - last)


def pay_cycle(t_ms: np.ndarray, paydays: Sequence[int]) -> np.ndarray:
    """Index of the pay cycle (payday to next payday) each time falls in, counted from 1970."""
    t = np.asarray(t_ms, np.int64)
    month = t.astype("datetime64[ms]").astype("datetime64[M]")
    m0 = month.astype("datetime64[ms]").astype(np.int64)
    day = (t - m0) / DAY_MS
    offs = np.array(sorted(d - 1 for d in paydays), float)
    k = np.searchsorted(offs, day, side="right") - 1  # -1: before the month's first payday
    return month.astype(np.int64) * len(offs) + k


def _by_calendar(fn: Callable[[np.ndarray, Sequence[int]], np.ndarray], t_ms: np.ndarray,
                 calendar: np.ndarray, calendars: Sequence[Sequence[int]],
                 dtype: Any) -> np.ndarray:  # fmt: skip
    """fn(t, paydays) per row, each row on its own calendar (few calendars: one call each)."""
    t = np.asarray(t_ms, np.int64)
    cal = np.broadcast_to(np.asarray(calendar, np.int64), t.shape)
    if t.size == 0:
        return np.zeros(t.shape, dtype)
    if (cal == cal.flat[0]).all():  # one calendar (every single row): no masking
        return fn(t, calendars[int(cal.flat[0])])
    out = np.empty(t.shape, dtype)
    for c in np.unique(cal):
        m = cal == c
        out[m] = fn(t[m], calendars[int(c)])
    return out


def payday_phase_by(t_ms: np.ndarray, calendar: np.ndarray,
                    calendars: Sequence[Sequence[int]]) -> np.ndarray:  # fmt: skip
    """payday_phase with each row's paydays taken from calendars[calendar[row]]."""
    return _by_calendar(payday_phase, t_ms, calendar, calendars, np.float64)


def pay_cycle_by(t_ms: np.ndarray, calendar: np.ndarray,
                 calendars: Sequence[Sequence[int]]) -> np.ndarray:  # fmt: skip
    """pay_cycle with each row's paydays taken from calendars[calendar[row]]. Cycle numbers of
    different calendars overlap; they are only compared for the same card."""
    return _by_calendar(pay_cycle, t_ms, calendar, calendars, np.int64)


def _phase1(t_ms: int, paydays: Sequence[int]) -> float:
    """payday_phase of one time, same arithmetic in plain Python."""
    d = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    m0 = datetime(d.year, d.month, 1, tzinfo=UTC)
    m1 = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    mp = datetime(d.year - (d.month == 1), (d.month - 2) % 12 + 1, 1, tzinfo=UTC)
    ms0 = int(m0.timestamp()) * 1000
    day = (t_ms - ms0) / DAY_MS
    offs = sorted(p - 1 for p in paydays)
    k = bisect.bisect_right(offs, day) - 1
    last = offs[k] if k >= 0 else offs[-1] - (ms0 - int(mp.timestamp()) * 1000) / DAY_MS
    nxt = (
        offs[k + 1] if k + 1 < len(offs) else (int(m1.timestamp()) * 1000 - ms0) / DAY_MS + offs[0]
    )
    return (day - last) / (nxt - last)


def hour_buckets(start_ms: int, days: float) -> np.ndarray:
    """Start times (epoch ms) of the hour buckets covering [start, start + days)."""
    n = int(np.ceil(days * 24))
    return start_ms + np.arange(n, dtype=np.int64) * HOUR_MS
