"""Residual sums: how a route x segment's outcomes compare with the model's estimates, recently.

One value per key: recency-weighted sums of weight, approvals and the model's p over the
outcomes routed there, and the event time they are decayed to. Two decays, both needed:
- per outcome of the key (half-life `half_life_outcomes`): a busy key forgets at the speed its
  traffic brings new evidence, so a shift is followed within a few hundred of its outcomes at
  any traffic rate;
- per unit of event time (half-life `half_life_ms`): a key nobody routes to any more (the route
  lost the segment) does not keep a verdict from hours ago; its weight fades and the reader's
  shrinkage hands the key back to its parent level.
The keys have the prefix `res|`: route x BIN, route x issuer country, route. The success-rate
windows (app.state.windows.count.stat_keys) split the middle level by network; the residuals do
not, because an issuer's rule change reaches its Visa and Mastercard cards alike and a country
key then sees a change in half the outcomes (issuer_shift, French issuers, 3 seeds x 10,000 on
histories 101 / 102 / 103: segment outcomes until 80% on the new best route nr, 305, nr / nr,
154, 434 / 648, 165, nr with the network split; 548, 332, 421 / 239, 103, 348 / 209, 154, 428
pooled). They live in the same owned table and are published unchanged (32 bytes) to the same
GlobalTable.

Order: an outcome older than the value's time is added with its decayed weight instead of
decaying the sums, so the time decay does not depend on arrival order; the per-outcome decay
does (one factor per update), which moves a replayed key's sums by rounding, not by meaning.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from app.state.windows.base import Store
from app.state.windows.count import snapshot_bytes, stat_keys

PREFIX = b"res|"
_VALUE = struct.Struct(">dddq")  # weight, approvals, sum of p, event time (ms) decayed to
SIZE = _VALUE.size


@dataclass(frozen=True)
class Decay:
    """Half-lives of the residual sums (defaults and their reasons in app.config.Settings)."""

    half_life_ms: float = 6 * 3_600_000.0
    half_life_outcomes: float = 300.0

    @property
    def per_outcome(self) -> float:
        return 2.0 ** (-1.0 / self.half_life_outcomes)


class Residual(NamedTuple):
    """Decayed sums of one key at a read time: weight, approvals, model p."""

    weight: float
    approvals: float
    p: float


_NONE = Residual(0.0, 0.0, 0.0)


@lru_cache(maxsize=1 << 16)  # ~4 routes x the BINs and countries seen recently; ~40 B a key
def residual_keys(route: str, bin_: str, network: str, issuer_country: str) -> tuple[bytes, ...]:
    """The three residual keys of a route and request, most specific first: route x BIN, route x
    issuer country (networks pooled, module docstring), route (cached: a request reads 12 of
    them, and formatting them was a third of the correction's cost)."""
    b, _, a = stat_keys(route, bin_, network, issuer_country)
    return (PREFIX + b.encode(), PREFIX + f"{route}|ic:{issuer_country}".encode(),
            PREFIX + a.encode())  # fmt: skip


def update(value: bytes | None, approved: bool, p: float, t_ms: int, decay: Decay) -> bytes:
    """The sums with one outcome (approved?, the model's p for it) at event time t_ms added."""
    y = 1.0 if approved else 0.0
    if value is None:
        return _VALUE.pack(1.0, y, p, t_ms)
    w, a, s, t0 = _VALUE.unpack(value)
    g = decay.per_outcome
    if t_ms >= t0:
        f = g * 2.0 ** (-(t_ms - t0) / decay.half_life_ms)
        return _VALUE.pack(w * f + 1.0, a * f + y, s * f + p, t_ms)
    u = 2.0 ** (-(t0 - t_ms) / decay.half_life_ms)  # an older outcome: its decayed weight
    return _VALUE.pack(w * g + u, a * g + u * y, s * g + u * p, t0)


def read(value: bytes | None, at_ms: int, decay: Decay) -> Residual:
    """The sums decayed to `at_ms` (no decay back in time)."""
    if value is None:
        return _NONE
    w, a, s, t0 = _VALUE.unpack(value)
    if at_ms > t0:
        f = 2.0 ** (-(at_ms - t0) / decay.half_life_ms)
        return Residual(w * f, a * f, s * f)
    return Residual(w, a, s)


def update_residuals(store: Store, outcome: dict[str, Any], p: float, decay: Decay) -> None:
    """Add one outcome with the model's p for its route to its three keys. The worker's route
    owner and the evaluator's router both learn through this; an outcome without a usable p
    (no model scored it, a probe of a demoted route) is not passed here."""
    if not 0.0 < p < 1.0 or math.isnan(p):
        return
    keys = residual_keys(outcome["route_id"], outcome["bin"], outcome["network"],
                         outcome["issuer_country"])  # fmt: skip
    approved, t = bool(outcome["approved"]), int(outcome["event_time"])
    for k in keys:
        store[k] = update(store.get(k), approved, p, t, decay)


def published(key: bytes, value: bytes) -> bytes:
    """What the route-sr GlobalTable holds for a route-stats key: residual sums as they are, a
    success-rate ring as its compact snapshot."""
    return value if key.startswith(PREFIX) else snapshot_bytes(value)
