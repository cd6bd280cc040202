"""The numpy reference of app.features.online: the FeatureState code the compiled kernel
replaced, kept verbatim over the numpy reference ring (app.state.windows.reference) so the
property tests can hold the compiled path bit-identical to it (rows, NaN positions and stored
bytes), and the benchmark can print the "before" figure in the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.contracts.vocab import DAY_MS
from app.features.definitions import (
    ENTITIES,
    HARD_CODES,
    METRICS,
    REQUEST_FEATURES,
    Entity,
    M,
    increments,
)
from app.features.online import _LAST, NAN, last_decline_key, request_features
from app.state.windows.base import Store
from app.state.windows.reference import TimeRing
from app.state.windows.time import Increment, geometry


@dataclass(frozen=True)
class _Plan:
    """What fill()/update_outcome() need per entity, computed once (hashing a frozen Entity on
    every lookup measured more than the ring arithmetic itself)."""

    entity: Entity
    owner: str
    ring: TimeRing
    count_w: np.ndarray
    count_m: np.ndarray
    rate_w: np.ndarray
    rate_m: np.ndarray


def _plan(e: Entity) -> _Plan:
    w = {x.name: i for i, x in enumerate(e.windows)}
    return _Plan(
        e,
        e.owner,
        TimeRing(geometry([(w.width_s * 1000, w.buckets) for w in e.windows], len(METRICS))),
        np.array([w[a] for a, _ in e.counts], dtype=np.intp),
        np.array([M[b] for _, b in e.counts], dtype=np.intp),
        np.array([w[a] for a, _ in e.rates], dtype=np.intp),
        np.array([M[b] for _, b in e.rates], dtype=np.intp),
    )


PLANS = tuple(_plan(e) for e in ENTITIES)
# fill() computes the card entities once per request and appends the per-route ones after
# them, which is FEATURE_NAMES order only because definitions list card entities first.
assert [p.owner == "card" for p in PLANS] == sorted(
    (p.owner == "card" for p in PLANS), reverse=True
), "card-owned entities must come first in ENTITIES"


class ReferenceFeatureState:
    """FeatureState as it was before the kernel, over the numpy reference ring: same stores,
    same values, ~30x slower."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores
        self._getters: dict[str, Callable[[bytes], bytes | None]] = {
            o: s.get for o, s in stores.items()
        }

    def update_outcome(self, outcome: dict[str, Any], owner: str) -> None:
        """Apply one outcome to the entities of one owner (each owner applies its own)."""
        t = outcome["event_time"]
        event = Increment(t, np.asarray(increments(outcome), dtype=np.int64))
        store = self.stores[owner]
        route = outcome["route_id"]
        for p in PLANS:
            if p.owner != owner:
                continue
            k = p.entity.key(outcome, route).encode()
            store[k] = p.ring.update_one(store.get(k), event)
        if owner == "card" and not outcome["approved"] and outcome["failure_side"] != "ROUTE":
            k = last_decline_key(outcome["card_fingerprint"]).encode()
            prev = store.get(k)
            if prev is None or _LAST.unpack(prev)[0] <= t:
                store[k] = _LAST.pack(t, outcome["response_code"] in HARD_CODES)

    def fill(self, req: dict[str, Any], out: np.ndarray) -> np.ndarray:
        """Write one feature row per candidate route of `req` into out[:k]; returns out[:k]."""
        cands = req["candidates"]
        rows = out[: len(cands)]
        t = req["event_time"]
        base = request_features(req)
        nb = len(base)
        rows[:, :nb] = base
        card_vals: list[float] = []
        for p in PLANS:  # card entities do not depend on the route: computed once
            if p.owner == "card":
                card_vals += self._entity_values(p, req, None, t)
        last = self._getters["card"](last_decline_key(req["card_fingerprint"]).encode())
        extra = [NAN, NAN, 0.0, 0.0]
        if last is not None:
            lt, hard = _LAST.unpack(last)
            if lt < t:
                payday_start = t - base[REQUEST_FEATURES.index("days_since_payday")] * DAY_MS
                same_day = datetime.fromtimestamp(lt / 1000, UTC).date() == datetime.fromtimestamp(
                    t / 1000, UTC).date()  # fmt: skip
                extra = [(t - lt) / 1000.0, float(hard), float(same_day),
                         float(lt >= payday_start)]  # fmt: skip
        issuer_country = req["issuer_country"]
        amount = req["amount_minor"]
        for i, c in enumerate(cands):
            route = c["route_id"]
            acq = c.get("acquirer_country")
            vals = list(card_vals)
            for p in PLANS:
                if p.owner != "card":
                    vals += self._entity_values(p, req, route, t)
            row = rows[i]
            row[nb - 2] = float(acq is not None and acq != issuer_country)
            row[nb - 1] = c["fee_minor"] * 10000.0 / amount
            row[nb:] = vals + extra
        return rows

    def card_window(self, entity_name: str, rec: dict[str, Any], t: int) -> dict[str, int]:
        """Metric sums of a card-owned entity's first window at time t (inclusive of t)."""
        p = next(p for p in PLANS if p.entity.name == entity_name)
        value = self._getters["card"](p.entity.key(rec, None).encode())
        sums = p.ring.read_one(value, t)[0]
        return {m: int(sums[i]) for m, i in M.items()}

    def _entity_values(
        self, p: _Plan, req: dict[str, Any], route: str | None, t: int
    ) -> list[float]:
        value = self._getters[p.owner](p.entity.key(req, route).encode())
        sums = p.ring.read_one(value, t)
        vals = sums[p.count_w, p.count_m].tolist()
        if len(p.rate_w):
            ns = sums[p.rate_w, 0].tolist()
            xs = sums[p.rate_w, p.rate_m].tolist()
            vals += [x / n if n else NAN for x, n in zip(xs, ns, strict=True)]
        return vals
