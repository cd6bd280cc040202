"""Online features: update state from outcomes, build the model's input rows for a request.

The same code runs in the worker (state in Faust tables on RocksDB) and in the parity test
(state in dicts): `FeatureState` only needs get/set mappings per owner. `fill()` writes one row
per candidate route into a caller-owned, preallocated float64 buffer.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.features import rings
from app.features.definitions import (
    CNP_CHANNELS,
    ENTITIES,
    FUNDING,
    HARD_CODES,
    N_FEATURES,
    NETWORKS,
    REQUEST_FEATURES,
    M,
    increments,
)

_LAST = struct.Struct(">qb")  # time of the card's last issuer decline (ms), hard flag
_NET = {n: float(i) for i, n in enumerate(NETWORKS)}
_FUND = {f: float(i) for i, f in enumerate(FUNDING)}
NAN = float("nan")


def last_decline_key(card: str) -> str:
    return f"card_last|{card}"


class FeatureState:
    """Feature state over one mapping per owner ('card', 'route', 'bin', 'merchant')."""

    def __init__(self, stores: dict[str, MutableMapping[bytes, bytes]]) -> None:
        self.stores = stores
        self._getters: dict[str, Callable[[bytes], bytes | None]] = {
            o: s.get for o, s in stores.items()
        }

    def update_outcome(self, outcome: dict[str, Any], owner: str) -> None:
        """Apply one outcome to the entities of one owner (each owner applies its own)."""
        incr = np.asarray(increments(outcome), dtype=np.int64)
        store = self.stores[owner]
        t = outcome["event_time"]
        route = outcome["route_id"]
        for e in ENTITIES:
            if e.owner != owner:
                continue
            k = e.key(outcome, route).encode()
            store[k] = rings.update(store.get(k), e, t, incr)
        if owner == "card" and not outcome["approved"] and outcome["failure_side"] != "ROUTE":
            k = last_decline_key(outcome["card_fingerprint"]).encode()
            prev = store.get(k)
            if prev is None or _LAST.unpack(prev)[0] <= t:
                store[k] = _LAST.pack(t, outcome["response_code"] in HARD_CODES)

    def fill(self, req: dict[str, Any], out: np.ndarray) -> np.ndarray:
        """Write one feature row per candidate route of `req` into out[:k]; returns out[:k]."""
        cands = req["candidates"]
        k = len(cands)
        rows = out[:k]
        t = req["event_time"]
        base = request_features(req)
        card_cache: dict[str, list[float]] = {}
        for i, c in enumerate(cands):
            row = rows[i]
            row[: len(base)] = base
            route = c["route_id"]
            row[len(base) - 1] = c["fee_minor"] * 10000.0 / req["amount_minor"]
            row[len(base) - 2] = float(
                c.get("acquirer_country") is not None
                and c["acquirer_country"] != req["issuer_country"]
            )
            j = len(base)
            for e in ENTITIES:
                if e.owner == "card" and e.name in card_cache:
                    vals = card_cache[e.name]
                else:
                    key = e.key(req, route).encode()
                    sums = rings.window_sums(self._getters[e.owner](key), e, t)
                    vals = [float(sums[w][M[m]]) for w, m in e.counts]
                    for w, m in e.rates:
                        n = sums[w][0]
                        vals.append(sums[w][M[m]] / n if n else NAN)
                    if e.owner == "card":
                        card_cache[e.name] = vals
                row[j : j + len(vals)] = vals
                j += len(vals)
            last = self._getters["card"](last_decline_key(req["card_fingerprint"]).encode())
            if last is None:
                row[j : j + 2] = (NAN, NAN)
            else:
                lt, hard = _LAST.unpack(last)
                row[j : j + 2] = ((t - lt) / 1000.0, float(hard)) if lt < t else (NAN, NAN)
        return rows


def request_features(req: dict[str, Any]) -> list[float]:
    """The stateless features (REQUEST_FEATURES order); route-specific ones filled per row."""
    dt = datetime.fromtimestamp(req["event_time"] / 1000, tz=UTC)
    feats = [
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
        0.0,  # cross_border, per route
        0.0,  # route_fee_bps, per route
    ]
    assert len(feats) == len(REQUEST_FEATURES)
    return feats


def new_buffer(max_routes: int = 16) -> np.ndarray:
    """A preallocated feature buffer for up to max_routes candidates."""
    return np.empty((max_routes, N_FEATURES), dtype=np.float64)
