"""Time-bucket rings packed into one bytes value per entity key (pure numpy).

Layout: int64 array (slots, 1 + len(METRICS)); column 0 holds the absolute bucket index of the
slot (-1 = empty), the rest the metric sums of that bucket. An entity's windows are consecutive
slot ranges. A slot is reused when a newer bucket maps to it, so there is no clock to advance
and an outcome older than the ring is dropped instead of corrupting a newer bucket.
"""

from __future__ import annotations

import numpy as np

from app.features.definitions import METRICS, Entity

COLS = 1 + len(METRICS)


def layout(entity: Entity) -> list[tuple[str, int, int, int]]:
    """(window name, width_ms, buckets, first slot) for each window of the entity."""
    out, off = [], 0
    for w in entity.windows:
        out.append((w.name, w.width_s * 1000, w.buckets, off))
        off += w.buckets
    return out


def empty(entity: Entity) -> np.ndarray:
    slots = sum(w.buckets for w in entity.windows)
    arr = np.zeros((slots, COLS), dtype=np.int64)
    arr[:, 0] = -1
    return arr


def update(value: bytes | None, entity: Entity, t_ms: int, incr: np.ndarray) -> bytes:
    """Add one outcome's increments at time t_ms; returns the new value."""
    arr = (
        empty(entity) if value is None else np.frombuffer(value, np.int64).reshape(-1, COLS).copy()
    )
    for _, width, n, off in layout(entity):
        b = t_ms // width
        row = arr[off + b % n]
        if row[0] == b:
            row[1:] += incr
        elif row[0] < b:
            row[0] = b
            row[1:] = incr
        # else: the slot holds a newer bucket; this outcome is older than the window
    return arr.tobytes()


def window_sums(value: bytes | None, entity: Entity, t_ms: int) -> dict[str, np.ndarray]:
    """Metric sums per window name as seen at time t_ms (zeros when the key has no state)."""
    if value is None:
        zero = np.zeros(len(METRICS), dtype=np.int64)
        return {w.name: zero for w in entity.windows}
    arr = np.frombuffer(value, np.int64).reshape(-1, COLS)
    out = {}
    for name, width, n, off in layout(entity):
        b = t_ms // width
        part = arr[off : off + n]
        live = (part[:, 0] > b - n) & (part[:, 0] <= b)
        out[name] = part[live, 1:].sum(axis=0)
    return out
