"""The numpy reference of the time ring (app.state.windows.time): the implementation the
compiled kernel must equal bit for bit, kept for tests/unit/state/test_kernel_parity.py and the
benchmark's "before" figure, never on the hot path (~25-45 us per update or read: a dozen
numpy calls on a few dozen slots).

The geometry is computed once per ring: a read is a handful of vector operations over at most
a few dozen slots, whatever the number of windows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from app.state.windows.base import Store
from app.state.windows.time import Geometry, Increment, RingUpdates, RowPlan

NAN = float("nan")


class TimeRing:
    """The `Ring` over `Increment`s: per window, the metric sums of the buckets that hold
    outcomes with floor(t / width) in [floor(at / width) - buckets + 1, floor(at / width)].
    Never young: a time window has no sample threshold, readers see it every N-th update."""

    def __init__(self, g: Geometry) -> None:
        self.g = g
        self._cols = 1 + g.metrics
        self._empty = np.zeros((g.slots, self._cols), dtype=np.int64)
        self._empty[:, 0] = -1
        self._zeros = np.zeros((len(g.buckets), g.metrics), dtype=np.int64)
        self._zeros.setflags(write=False)

    def empty(self) -> bytes:
        return self._empty.tobytes()

    def update_one(self, value: bytes | None, event: Increment) -> bytes:
        g = self.g
        if value is None:
            arr = self._empty.copy()
        else:
            arr = np.frombuffer(value, np.int64).reshape(-1, self._cols).copy()
        b = event.t_ms // g.width_ms
        slots = g.starts + b % g.buckets
        held = arr[slots, 0]
        same = slots[held == b]
        arr[same, 1:] += event.incr
        newer = held < b
        if newer.any():  # the slot held an older bucket: it becomes this bucket
            arr[slots[newer], 0] = b[newer]
            arr[slots[newer], 1:] = event.incr
        # slots holding a newer bucket are left alone: this outcome is older than the window
        return arr.tobytes()

    def read_one(self, value: bytes | None, at_ms: int) -> np.ndarray:
        """Metric sums, one row per window (geometry order), as seen at time at_ms; the
        all-zero result of a missing key is shared and read-only."""
        if value is None:
            return self._zeros
        g = self.g
        arr = np.frombuffer(value, np.int64).reshape(-1, self._cols)
        b = at_ms // g.slot_width
        live = (arr[:, 0] > b - g.slot_buckets) & (arr[:, 0] <= b)
        return np.add.reduceat(arr[:, 1:] * live[:, None], g.starts, axis=0)

    def young(self, value: bytes) -> bool:
        return False


def readout_values(
    ring: TimeRing, value: bytes | None, at_ms: int, counts: Sequence[tuple[int, int]],
    rates: Sequence[tuple[int, int]],
) -> list[float]:  # fmt: skip
    """One readout's feature values: the counts' sums, then each rate's sum over the window's
    metric 0 (NaN where that is 0), as Python numbers (how the numpy feature code built them)."""
    sums = ring.read_one(value, at_ms)
    vals: list[float] = [sums[w, m].item() for w, m in counts]
    vals += [x / n if n else NAN for x, n in ((sums[w, m].item(), sums[w, 0].item())
                                              for w, m in rates)]  # fmt: skip
    return vals


def fill_rows(
    plan: RowPlan,
    values: Sequence[bytes | None],
    at_ms: int,
    out: np.ndarray,
    k: int,
    shared: Sequence[float],
    per_row: Sequence[float],
) -> None:
    """What RowPlan.fill writes, computed with the numpy reference ring and Python arithmetic."""
    rings = {id(r.ring): TimeRing(r.ring.g) for r in (*plan.shared, *plan.per_row)}
    rows = out[:k]
    for i in range(k):
        row = rows[i]
        for c, x in zip(plan.shared_cols, shared, strict=True):
            row[c] = x
        for j, c in enumerate(plan.row_cols):
            row[c] = per_row[i * len(plan.row_cols) + j]
        for r, v in zip(plan.shared, values[: len(plan.shared)], strict=True):
            row[r.col : r.col + r.width] = readout_values(rings[id(r.ring)], v, at_ms,
                                                          r.counts, r.rates)  # fmt: skip
        base = len(plan.shared) + i * len(plan.per_row)
        for r, v in zip(plan.per_row, values[base : base + len(plan.per_row)], strict=True):
            row[r.col : r.col + r.width] = readout_values(rings[id(r.ring)], v, at_ms,
                                                          r.counts, r.rates)  # fmt: skip


def fill_rows_keyed(
    plan: RowPlan,
    getters: Sequence[Callable[[bytes], bytes | None]],
    rec: Mapping[str, Any],
    routes: Sequence[str],
    at_ms: int,
    out: np.ndarray,
    shared: Sequence[float],
    per_row: Sequence[float],
) -> None:
    """What RowPlan.fill_keyed writes: the values looked up in Python, then fill_rows."""
    keys = [r.key for r in (*plan.shared, *plan.per_row) if r.key is not None]
    if len(keys) != len(getters):
        raise ValueError("one getter per readout, every readout with a key")
    n = len(plan.shared)
    values = [g(key.of(rec)) for g, key in zip(getters[:n], keys[:n], strict=True)]
    for route in routes:
        values += [g(key.of(rec, route)) for g, key in zip(getters[n:], keys[n:], strict=True)]
    fill_rows(plan, values, at_ms, out, len(routes), shared, per_row)


def apply_updates(
    updates: RingUpdates,
    get: Callable[[bytes], bytes | None],
    store: Store,
    rec: Mapping[str, Any],
    route: str | None,
    t_ms: int,
    incr: Any,
) -> None:
    """What RingUpdates.apply does, with the numpy reference ring."""
    event = Increment(t_ms, np.asarray(incr, dtype=np.int64))
    for ring, key in updates.rings:
        k = key.of(rec, route)
        store[k] = TimeRing(ring.g).update_one(get(k), event)
