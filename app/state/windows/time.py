"""Time-bucket rings: sums of metric columns per time bucket, packed into one bytes value.

Layout: int64 array (slots, 1 + metrics), native byte order; column 0 holds the absolute bucket
index of the slot (-1 = empty), the rest the metric sums of that bucket. A key's windows are
consecutive slot ranges. A slot is reused when a newer bucket maps to it, so there is no clock
to advance and an outcome older than the ring is dropped instead of corrupting a newer bucket.
The layout is the tables' and changelogs' format: it must not change.

`TimeRing` and `RowPlan` run the compiled kernel (app.state.windows.kernel, ring.c);
app.state.windows.reference holds the numpy implementation they are proven bit-identical to
(tests/unit/state/test_kernel_parity.py). The codec knows nothing of what the columns mean:
features pass their metric count, windows and which sums they export.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from app.state.windows import kernel
from app.state.windows.base import Store


class Increment(NamedTuple):
    """One event: at t_ms, add `incr` (one int64 per metric column) to each window's bucket.
    The compiled ring also takes a list or tuple of ints as `incr`."""

    t_ms: int
    incr: Any  # np.ndarray of int64, or a sequence of ints


@dataclass(frozen=True)
class Geometry:
    metrics: int  # metric columns per slot (the bucket index column comes on top)
    width_ms: np.ndarray  # per window
    buckets: np.ndarray  # per window
    starts: np.ndarray  # first slot of each window
    slot_width: np.ndarray  # per slot
    slot_buckets: np.ndarray  # per slot
    slots: int


def geometry(windows: Sequence[tuple[int, int]], metrics: int) -> Geometry:
    """Slots of the windows given as (bucket width in ms, bucket count), in that order."""
    widths = np.array([w for w, _ in windows], dtype=np.int64)
    buckets = np.array([n for _, n in windows], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(buckets)[:-1])).astype(np.int64)
    return Geometry(
        metrics,
        widths,
        buckets,
        starts,
        np.repeat(widths, buckets),
        np.repeat(buckets, buckets),
        int(buckets.sum()),
    )


def geometry_spec(g: Geometry) -> list[int]:
    """The kernel's description of a geometry: windows, metrics, slots, (width, buckets,
    first slot) per window."""
    spec = [len(g.width_ms), g.metrics, g.slots]
    for w, n, s in zip(g.width_ms.tolist(), g.buckets.tolist(), g.starts.tolist(), strict=True):
        spec += [w, n, s]
    return spec


def _pack(ints: Sequence[int]) -> bytes:
    return np.asarray(ints, dtype=np.int64).tobytes()


def empty_value(g: Geometry) -> bytes:
    arr = np.zeros((g.slots, 1 + g.metrics), dtype=np.int64)
    arr[:, 0] = -1
    return arr.tobytes()


class TimeRing:
    """The `Ring` over `Increment`s: per window, the metric sums of the buckets that hold
    outcomes with floor(t / width) in [floor(at / width) - buckets + 1, floor(at / width)].
    Never young: a time window has no sample threshold, readers see it every N-th update.
    A value whose size is not this geometry's is refused (ValueError)."""

    def __init__(self, g: Geometry) -> None:
        self.g = g
        self.spec = geometry_spec(g)
        self._empty = empty_value(g)
        self._zeros = np.zeros((len(g.buckets), g.metrics), dtype=np.int64)
        self._zeros.setflags(write=False)
        self._geom: object | None = None  # the kernel's handle, made on first use

    def handle(self) -> object:
        """The kernel's validated geometry (built on first use: the ring modules are imported
        before the settings that say where the kernel lives)."""
        if self._geom is None:
            self._geom = kernel.load().geometry(_pack(self.spec))
        return self._geom

    def empty(self) -> bytes:
        return self._empty

    def update_one(self, value: bytes | None, event: Increment) -> bytes:
        value = kernel.load().update(self.handle(), value, event.t_ms, event.incr)
        return value

    def read_one(self, value: bytes | None, at_ms: int) -> np.ndarray:
        """Metric sums, one row per window (geometry order), as seen at time at_ms; the
        all-zero result of a missing key is shared and read-only."""
        if value is None:
            return self._zeros
        out = np.empty(self._zeros.shape, dtype=np.int64)
        kernel.load().read(self.handle(), value, at_ms, out)
        return out

    def young(self, value: bytes) -> bool:
        return False


@dataclass(frozen=True)
class Key:
    """How a ring's table key is made from a record: `prefix` + '|'.join(str(rec[f]) for f in
    fields), UTF-8 encoded, where a None field stands for the route (given per row). The kernel
    builds the same bytes in C (fill_keyed, RingUpdates)."""

    prefix: str
    fields: tuple[str | None, ...]

    def of(self, rec: Mapping[str, Any], route: str | None = None) -> bytes:
        parts = []
        for f in self.fields:
            if f is not None:
                parts.append(str(rec[f]))
            elif route is None:
                raise ValueError("this key holds the route: pass the route")
            else:
                parts.append(route)
        return (self.prefix + "|".join(parts)).encode()

    def kernel_form(self) -> tuple[bytes, tuple[str | None, ...]]:
        return self.prefix.encode(), self.fields


@dataclass(frozen=True)
class Readout:
    """One ring's share of a feature row, written from column `col`: the window sums named by
    `counts` ((window, metric) pairs, as numbers), then the rates named by `rates` (metric over
    the window's metric 0, NaN where that is 0). `key`: how fill_keyed finds its value."""

    ring: TimeRing
    col: int
    counts: tuple[tuple[int, int], ...]
    rates: tuple[tuple[int, int], ...] = ()
    key: Key | None = None

    @property
    def width(self) -> int:
        return len(self.counts) + len(self.rates)


class RowPlan:
    """How k feature rows of `columns` float64 are written in one kernel call: the `shared`
    readouts and `shared_cols` floats are the same in every row (read once), the `per_row`
    readouts and `row_cols` floats are given per row. Every column is written by exactly one
    of them (checked when the plan is built: ValueError otherwise)."""

    def __init__(
        self,
        columns: int,
        shared_cols: Sequence[int],
        row_cols: Sequence[int],
        shared: Sequence[Readout],
        per_row: Sequence[Readout],
    ) -> None:
        self.columns = columns
        self.shared_cols = tuple(shared_cols)
        self.row_cols = tuple(row_cols)
        self.shared = tuple(shared)
        self.per_row = tuple(per_row)
        spec = [columns, len(self.shared_cols), len(self.row_cols), len(self.shared),
                len(self.per_row), *self.shared_cols, *self.row_cols]  # fmt: skip
        for r in (*self.shared, *self.per_row):
            spec += [r.col, len(r.counts), len(r.rates), *r.ring.spec]
            for w, m in (*r.counts, *r.rates):
                spec += [w, m]
        self.spec = spec
        self._plan: object | None = None
        self.handle()  # validate now: a bad plan fails where it is made

    def handle(self) -> object:
        if self._plan is None:
            keys = tuple(None if r.key is None else r.key.kernel_form()
                         for r in (*self.shared, *self.per_row))  # fmt: skip
            self._plan = kernel.load().plan(_pack(self.spec), keys)
        return self._plan

    def fill(
        self,
        values: Sequence[bytes | None],
        at_ms: int,
        out: np.ndarray,
        k: int,
        shared: Sequence[float],
        per_row: Sequence[float],
    ) -> None:
        """Rows out[:k] at time at_ms. values: the shared readouts' ring values, then per row
        its readouts' values (row-major); shared: the shared_cols floats; per_row: k x row_cols
        floats, row-major. out must be C-contiguous float64 with `columns` columns."""
        kernel.load().fill(self.handle(), values, at_ms, out, k, shared, per_row)

    def fill_keyed(
        self,
        getters: Sequence[Callable[[bytes], bytes | None]],
        rec: Mapping[str, Any],
        routes: Sequence[str],
        at_ms: int,
        out: np.ndarray,
        shared: Sequence[float],
        per_row: Sequence[float],
    ) -> None:
        """fill() for k = len(routes) rows, each readout's value looked up by the kernel: one
        getter per readout (shared first), called with its key made from rec (and the row's
        route). Every readout needs a key."""
        kernel.load().fill_keyed(self.handle(), getters, rec, routes, at_ms, out, shared, per_row)


class RingUpdates:
    """The rings one record updates in one store, each under its key: apply() does, in order,
    store[key] = ring.update_one(get(key), Increment(t_ms, incr)) in one kernel call. The
    rings share one metric count."""

    def __init__(self, rings: Sequence[tuple[TimeRing, Key]]) -> None:
        self.rings = tuple(rings)
        self._updates: object | None = None

    def handle(self) -> object:
        if self._updates is None:
            self._updates = kernel.load().updates(
                tuple((ring.handle(), key.kernel_form()) for ring, key in self.rings)
            )
        return self._updates

    def apply(
        self,
        get: Callable[[bytes], bytes | None],
        store: Store,
        rec: Mapping[str, Any],
        route: str | None,
        t_ms: int,
        incr: Any,
    ) -> None:
        kernel.load().apply(self.handle(), get, store, rec, route, t_ms, incr)
