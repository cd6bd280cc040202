"""Time-bucket rings: sums of metric columns per time bucket, packed into one bytes value.

Layout: int64 array (slots, 1 + metrics); column 0 holds the absolute bucket index of the slot
(-1 = empty), the rest the metric sums of that bucket. A key's windows are consecutive slot
ranges. A slot is reused when a newer bucket maps to it, so there is no clock to advance and an
outcome older than the ring is dropped instead of corrupting a newer bucket.

The geometry (slot widths, bucket counts, window starts) is computed once per ring: a read is a
handful of vector operations over at most a few dozen slots, whatever the number of windows.
The codec knows nothing of what the columns mean: features pass their metric count and windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Increment(NamedTuple):
    """One event: at t_ms, add `incr` (one int64 per metric column) to each window's bucket."""

    t_ms: int
    incr: np.ndarray


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
