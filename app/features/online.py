"""Online features: update state from outcomes, build the model's input rows for a request.

The same code runs in the worker (state in Faust tables on RocksDB) and in the parity test
(state in dicts): `FeatureState` only needs a get/set store per owner, and keeps each entity's
windows in one time ring (app.state.windows.time). `fill()` writes one row per candidate route
into a caller-owned, preallocated float64 buffer.

The hot path is compiled (app.state.windows.kernel): an owner's update is one kernel call that
makes each entity's key, gets its ring, updates it and sets it back; a request's rows are one
call that makes the 5 + 4 x routes keys, gets the rings and writes every ring feature of every
row. Python keeps what is per request, not per ring: the request's own columns, the two
per-route columns, the last-decline record. Measured by `python -m app.bench.features` (4
routes, same run): 18-20 us per event (update for all owners + rows; 26-28 us on a loaded
machine), against 410-430 us for the numpy code this replaced (app.features.reference), which
the property tests hold this code bit-identical to (tests/unit/features/test_online_kernel.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np

from app.contracts.vocab import CNP_CHANNELS, DAY_MS, FUNDING, NETWORKS
from app.features.definitions import (
    CARD_EXTRA,
    ENTITIES,
    HARD_CODES,
    METRICS,
    N_FEATURES,
    REQUEST_FEATURES,
    Entity,
    M,
    increments,
)
from app.features.paycycle import pay_cycle
from app.state.windows import kernel
from app.state.windows.base import Store
from app.state.windows.time import Key, Readout, RingUpdates, RowPlan, TimeRing, geometry

_LAST = struct.Struct(">qb")  # time of the card's last issuer decline (ms), hard flag
_NET = {n: float(i) for i, n in enumerate(NETWORKS)}
_FUND = {f: float(i) for i, f in enumerate(FUNDING)}
NAN = float("nan")
_SINCE_PAYDAY = REQUEST_FEATURES.index("days_since_payday")  # in _request_head's output
ROUTE = "route_id"


def last_decline_key(card: str) -> str:
    return f"card_last|{card}"


def entity_key(e: Entity) -> Key:
    """The kernel's form of e.key(rec, route): Key.of(rec, route) == e.key(rec, route).encode()."""
    return Key(e.name + "|", tuple(None if f == ROUTE else f for f in e.fields))


@dataclass(frozen=True)
class _Plan:
    """What FeatureState needs per entity, computed once."""

    entity: Entity
    owner: str
    ring: TimeRing
    key: Key
    by_route: bool  # keyed by the route: read once per candidate
    readout: Readout  # where its features go in a row, and its key


def _plans() -> tuple[_Plan, ...]:
    plans = []
    col = len(REQUEST_FEATURES)
    for e in ENTITIES:
        w = {x.name: i for i, x in enumerate(e.windows)}
        ring = TimeRing(geometry([(x.width_s * 1000, x.buckets) for x in e.windows], len(METRICS)))
        key = entity_key(e)
        readout = Readout(ring, col, tuple((w[a], M[b]) for a, b in e.counts),
                          tuple((w[a], M[b]) for a, b in e.rates), key)  # fmt: skip
        col += readout.width
        plans.append(_Plan(e, e.owner, ring, key, ROUTE in e.fields, readout))
    assert col + len(CARD_EXTRA) == N_FEATURES, "rows are request, entity, card-extra columns"
    return tuple(plans)


PLANS = _plans()
_BY_NAME = {p.entity.name: p for p in PLANS}
# Row layout (FEATURE_NAMES order): the request's columns, each entity's counts then rates in
# ENTITIES order, CARD_EXTRA. Two request columns depend on the route; the rest is shared, and
# so are the entities not keyed by the route (card-owned, BIN, merchant): read once a request.
_NB = len(REQUEST_FEATURES)
_ROUTE_COLS = (REQUEST_FEATURES.index("cross_border"), REQUEST_FEATURES.index("route_fee_bps"))
assert _ROUTE_COLS == (_NB - 2, _NB - 1), "request_features() puts the route columns last"
_SHARED_COLS = (*range(_NB - 2), *range(N_FEATURES - len(CARD_EXTRA), N_FEATURES))
_READ_ORDER = tuple(p for p in PLANS if not p.by_route) + tuple(p for p in PLANS if p.by_route)


@cache
def row_plan() -> RowPlan:
    """The kernel's plan of a feature row (made on first use: it loads the kernel)."""
    return RowPlan(
        N_FEATURES,
        _SHARED_COLS,
        _ROUTE_COLS,
        [p.readout for p in _READ_ORDER if not p.by_route],
        [p.readout for p in _READ_ORDER if p.by_route],
    )


@cache
def owner_updates(owner: str) -> RingUpdates:
    """The rings an outcome updates in one owner's store, with their keys."""
    return RingUpdates([(p.ring, p.key) for p in PLANS if p.owner == owner])


class FeatureState:
    """Feature state over one mapping per owner ('card', 'route', 'bin', 'merchant')."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = stores
        self._getters: dict[str, Callable[[bytes], bytes | None]] = {
            o: s.get for o, s in stores.items()
        }
        k = kernel.load()
        self._apply = k.apply
        self._fill_keyed = k.fill_keyed
        self._plan = row_plan().handle()
        self._updates = {o: owner_updates(o).handle() for o in {p.owner for p in PLANS}}
        self._readout_getters = tuple(self._getter(p.owner) for p in _READ_ORDER)
        self._card_get = self._getter("card")

    def _getter(self, owner: str) -> Callable[[bytes], bytes | None]:
        """The owner's store's get; a state without that owner fails when read (KeyError)."""
        if owner in self._getters:
            return self._getters[owner]

        def missing(key: bytes) -> bytes | None:
            raise KeyError(f"this FeatureState has no {owner!r} store")

        return missing

    def update_outcome(self, outcome: dict[str, Any], owner: str) -> None:
        """Apply one outcome to the entities of one owner (each owner applies its own): one
        kernel call makes the keys, reads, updates and writes every ring of the owner."""
        t = outcome["event_time"]
        store = self.stores[owner]
        updates = self._updates.get(owner)
        if updates is not None:
            incr = increments(outcome)
            self._apply(updates, self._getters[owner], store, outcome, outcome["route_id"], t, incr)
        if owner == "card" and not outcome["approved"] and outcome["failure_side"] != "ROUTE":
            k = last_decline_key(outcome["card_fingerprint"]).encode()
            prev = store.get(k)
            if prev is None or _LAST.unpack(prev)[0] <= t:
                store[k] = _LAST.pack(t, outcome["response_code"] in HARD_CODES)

    def fill(self, req: dict[str, Any], out: np.ndarray) -> np.ndarray:
        """Write one feature row per candidate route of `req` into out[:k]; returns out[:k].
        out: C-contiguous float64 with N_FEATURES columns (new_buffer()). One kernel call
        makes every ring's key, reads it and writes every ring feature of every row."""
        cands = req["candidates"]
        t = req["event_time"]
        issuer_country = req["issuer_country"]
        amount = req["amount_minor"]
        routes = []
        per_row: list[float] = []
        for c in cands:
            routes.append(c["route_id"])
            acq = c.get("acquirer_country")
            per_row += (float(acq is not None and acq != issuer_country),
                        c["fee_minor"] * 10000.0 / amount)  # fmt: skip
        shared = _request_head(req)
        last = self._card_get(last_decline_key(req["card_fingerprint"]).encode())
        if last is None:
            shared += (NAN, NAN, 0.0, 0.0)
        else:
            lt, hard = _LAST.unpack(last)
            if lt < t:
                since_payday = shared[_SINCE_PAYDAY]  # NaN without a calendar: not this cycle
                shared += ((t - lt) / 1000.0, float(hard), float(lt // DAY_MS == t // DAY_MS),
                           float(lt >= t - since_payday * DAY_MS))  # fmt: skip
            else:
                shared += (NAN, NAN, 0.0, 0.0)
        self._fill_keyed(self._plan, self._readout_getters, req, routes, t, out, shared, per_row)
        return out[: len(cands)]

    def card_window(self, entity_name: str, rec: dict[str, Any], t: int) -> dict[str, int]:
        """Metric sums of a card-owned entity's first window at time t (inclusive of t)."""
        p = _BY_NAME[entity_name]
        assert p.owner == "card" and not p.by_route
        value = self._card_get(p.key.of(rec))
        sums = p.ring.read_one(value, t)[0].tolist()
        return {m: sums[i] for m, i in M.items()}


def _request_head(req: dict[str, Any]) -> list[float]:
    """The stateless features but the two per-route ones (the last two of REQUEST_FEATURES)."""
    dt = datetime.fromtimestamp(req["event_time"] / 1000, tz=UTC)
    return [
        math.log1p(req["amount_minor"]),
        float(req["attempt"]),
        float(dt.hour),
        float(dt.weekday()),
        float(req["channel"] in CNP_CHANNELS),
        float(req["initiator"] == "MIT"),
        float(req["recurring"]),
        float(req["sca_required"]),
        float(req["three_ds"]),
        _NET.get(req["network"], NAN),
        _FUND.get(req["funding"], NAN),
        *pay_cycle(req["event_time"], req["issuer_country"]),
    ]


def request_features(req: dict[str, Any]) -> list[float]:
    """The stateless features (REQUEST_FEATURES order); route-specific ones filled per row."""
    feats = _request_head(req)
    feats += (0.0, 0.0)  # cross_border, route_fee_bps: per route
    assert len(feats) == len(REQUEST_FEATURES)
    return feats


def new_buffer(max_routes: int = 16) -> np.ndarray:
    """A preallocated feature buffer for up to max_routes candidates."""
    return np.empty((max_routes, N_FEATURES), dtype=np.float64)
