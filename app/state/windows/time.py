"""Time-bucket rings packed into one bytes value per entity key (pure numpy).

Layout: int64 array (slots, 1 + len(METRICS)); column 0 holds the absolute bucket index of the
slot (-1 = empty), the rest the metric sums of that bucket. An entity's windows are consecutive
slot ranges. A slot is reused when a newer bucket maps to it, so there is no clock to advance
and an outcome older than the ring is dropped instead of corrupting a newer bucket.

Per-entity geometry (slot widths, bucket counts, window starts) is computed once: a read is a
handful of vector operations over at most a few dozen slots, whatever the number of windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from app.features.definitions import METRICS, Entity

COLS = 1 + len(METRICS)


@dataclass(frozen=True)
class Geometry:
    windows: tuple[str, ...]
    width_ms: np.ndarray  # per window
    buckets: np.ndarray  # per window
    starts: np.ndarray  # first slot of each window
    slot_width: np.ndarray  # per slot
    slot_buckets: np.ndarray  # per slot
    slots: int


@cache
def geometry(entity: Entity) -> Geometry:
    widths = np.array([w.width_s * 1000 for w in entity.windows], dtype=np.int64)
    buckets = np.array([w.buckets for w in entity.windows], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(buckets)[:-1])).astype(np.int64)
    return Geometry(
        tuple(w.name for w in entity.windows),
        widths,
        buckets,
        starts,
        np.repeat(widths, buckets),
        np.repeat(buckets, buckets),
        int(buckets.sum()),
    )


def empty(g: Geometry) -> np.ndarray:
    """A ring with every slot unused (bucket -1)."""
    arr = np.zeros((g.slots, COLS), dtype=np.int64)
    arr[:, 0] = -1
    return arr


def update(value: bytes | None, g: Geometry, t_ms: int, incr: np.ndarray) -> bytes:
    """Add one outcome's increments at time t_ms; returns the new value."""
    arr = empty(g) if value is None else np.frombuffer(value, np.int64).reshape(-1, COLS).copy()
    b = t_ms // g.width_ms
    slots = g.starts + b % g.buckets
    held = arr[slots, 0]
    same = slots[held == b]
    arr[same, 1:] += incr
    newer = held < b
    if newer.any():  # the slot held an older bucket: it becomes this bucket
        arr[slots[newer], 0] = b[newer]
        arr[slots[newer], 1:] = incr
    # slots holding a newer bucket are left alone: this outcome is older than the window
    return arr.tobytes()


def window_sums(value: bytes | None, g: Geometry, t_ms: int) -> np.ndarray:
    """Metric sums, one row per window (entity.windows order), as seen at time t_ms."""
    if value is None:
        return np.zeros((len(g.windows), len(METRICS)), dtype=np.int64)
    arr = np.frombuffer(value, np.int64).reshape(-1, COLS)
    b = t_ms // g.slot_width
    live = (arr[:, 0] > b - g.slot_buckets) & (arr[:, 0] <= b)
    return np.add.reduceat(arr[:, 1:] * live[:, None], g.starts, axis=0)
