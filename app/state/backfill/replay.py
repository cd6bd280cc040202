"""The reference: replay outcomes one by one through the worker's own state code, into dicts.

What `compute` must equal byte for byte (tests/unit/state/test_backfill.py) and what the
benchmark measures it against: `FeatureState.update_outcome` for all four owners (card-owned
keys in one dict, route / BIN / merchant keys in another, as the worker's card-features and
feature-state tables split them) and `update_success_rate` into a third (route-stats).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from app.features.definitions import OWNERS
from app.features.online import FeatureState
from app.state.backfill.vectorized import BackfillState
from app.state.windows.count import CountRing, update_success_rate


def replay_order(rows: Sequence[dict[str, Any]], as_of_ms: int | None = None
                 ) -> list[dict[str, Any]]:  # fmt: skip
    """Outcome records (log order) in replay order, written as plainly as possible: the first
    copy of each request_id, event_time <= as_of_ms, sorted by (event_time, log position)."""
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    for r in rows:
        if r["request_id"] not in seen:
            seen.add(r["request_id"])
            kept.append(r)
    if as_of_ms is not None:
        kept = [r for r in kept if r["event_time"] <= as_of_ms]
    order = sorted(range(len(kept)), key=lambda i: (kept[i]["event_time"], i))
    return [kept[i] for i in order]


def replay(outcomes: Iterable[dict[str, Any]], sr_window: int) -> BackfillState:
    """The state after pushing every outcome, in the order given, through the worker's code."""
    card: dict[bytes, bytes] = {}
    owned: dict[bytes, bytes] = {}
    stats: dict[bytes, bytes] = {}
    stores = {o: card if o == "card" else owned for o in OWNERS}
    features = FeatureState(stores)
    ring = CountRing(sr_window)
    n, as_of = 0, None
    for o in outcomes:
        for owner in OWNERS:
            features.update_outcome(o, owner)
        update_success_rate(stats, o, ring)
        n += 1
        as_of = o["event_time"] if as_of is None else max(as_of, o["event_time"])
    return BackfillState(card, owned, stats, sr_window, as_of, n)
