"""Count ring: the last B outcomes of a key in one bytes value, for success-rate routing.

The window is a ring of the last B outcomes (B = AUTHPILOT_SR_WINDOW) held in a single bytes
value: one table write per key per outcome instead of one windowed-table entry per statistic.
Keys are hierarchical so a route with little history for one BIN still has an estimate:
  <route>|bin:<bin>   <route>|cc:<network>:<issuer_country>   <route>|all
The owner of a key (the partition its repartitioned updates land on) keeps the ring; every
worker reads compact snapshots (successes, samples, route failures) from a GlobalTable.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from app.state.windows.base import Store

APPROVED = 1
ISSUER_DECLINE = 0
ROUTE_FAILURE = 2

# ring value: updates (u32), pos (u16), n (u16), successes (u16), route failures (u16), ring
_RING_HEADER = struct.Struct(">IHHHH")
_SNAPSHOT = struct.Struct(">HHH")
LEVELS = ("bin", "cc", "all")


class Snapshot(NamedTuple):
    """What the policy needs from a key: approvals and outcomes in the window."""

    successes: int
    samples: int
    route_failures: int


_NOTHING = Snapshot(0, 0, 0)


class CountRing:
    """The `Ring` over outcome codes (APPROVED, ISSUER_DECLINE, ROUTE_FAILURE): totals of the
    last `window` outcomes. A key is young while it holds at most `min_samples` outcomes: the
    router does not trust it yet and each outcome still moves its estimate by >= 1/min_samples.
    """

    def __init__(self, window: int, min_samples: int = 0) -> None:
        self.window = window
        self.min_samples = min_samples

    def empty(self) -> bytes:
        return _RING_HEADER.pack(0, 0, 0, 0, 0) + bytes(self.window)

    def update_one(self, value: bytes | None, event: int) -> bytes:
        """Push one outcome code; the oldest falls out once the ring holds `window` of them.
        A value of another window size keeps its newest outcomes that fit."""
        window = self.window
        if value is None or len(value) != _RING_HEADER.size + window:
            updates, pos, n, succ, fail = 0, 0, 0, 0, 0
            ring = bytearray(window)
            if value is not None:  # window size changed: keep the newest outcomes that fit
                old_updates, old_pos, old_n, _, _ = _RING_HEADER.unpack_from(value)
                old_ring = value[_RING_HEADER.size :]
                size = len(old_ring)
                ordered = [old_ring[(old_pos - old_n + i) % size] for i in range(old_n)][-window:]
                for i, c in enumerate(ordered):
                    ring[i] = c
                n = len(ordered)
                pos = n % window
                succ = sum(1 for c in ordered if c == APPROVED)
                fail = sum(1 for c in ordered if c == ROUTE_FAILURE)
                updates = old_updates
        else:
            updates, pos, n, succ, fail = _RING_HEADER.unpack_from(value)
            ring = bytearray(value[_RING_HEADER.size :])
        if n == window:  # evict the oldest, which sits where the next one goes
            old = ring[pos]
            succ -= old == APPROVED
            fail -= old == ROUTE_FAILURE
        else:
            n += 1
        ring[pos] = event
        succ += event == APPROVED
        fail += event == ROUTE_FAILURE
        pos = (pos + 1) % window
        updates = (updates + 1) & 0xFFFFFFFF
        return _RING_HEADER.pack(updates, pos, n, succ, fail) + bytes(ring)

    def read_one(self, value: bytes | None, at_ms: int = 0) -> Snapshot:
        """The window's totals, read from the header (O(1)); at_ms is ignored."""
        if value is None:
            return _NOTHING
        _, _, n, succ, fail = _RING_HEADER.unpack_from(value)
        return Snapshot(succ, n, fail)

    def young(self, value: bytes) -> bool:
        return _RING_HEADER.unpack_from(value)[2] <= self.min_samples


def update_count(value: bytes) -> int:
    """How many outcomes were ever pushed into the ring (mod 2**32), the evicted ones included."""
    return _RING_HEADER.unpack_from(value)[0]


def outcome_code(rec: dict[str, Any]) -> int:
    """Approved, declined by the issuer, or failed on the route (acquirer/processor side)."""
    if rec["approved"]:
        return APPROVED
    return ROUTE_FAILURE if rec["failure_side"] == "ROUTE" else ISSUER_DECLINE


def stat_keys(route: str, bin_: str, network: str, issuer_country: str) -> tuple[str, str, str]:
    """The three keys (most specific first) an outcome updates and a request reads."""
    return (f"{route}|bin:{bin_}", f"{route}|cc:{network}:{issuer_country}", f"{route}|all")


def update_success_rate(store: Store, outcome: dict[str, Any], ring: CountRing) -> None:
    """Push one outcome into the rings of its three stat keys. The worker's route owner (over
    its OwnedState) and the evaluator's router (over a dict) both learn through this."""
    code = outcome_code(outcome)
    keys = stat_keys(outcome["route_id"], outcome["bin"], outcome["network"],
                     outcome["issuer_country"])  # fmt: skip
    for key in keys:
        k = key.encode()
        store[k] = ring.update_one(store.get(k), code)


def pack_snapshot(s: Snapshot) -> bytes:
    return _SNAPSHOT.pack(*s)


def unpack_snapshot(value: bytes | None) -> Snapshot | None:
    return None if value is None else Snapshot(*_SNAPSHOT.unpack(value))


def snapshot_bytes(value: bytes) -> bytes:
    """What the GlobalTable holds for a ring: its packed Snapshot (6 bytes instead of B + 12)."""
    _, _, n, succ, fail = _RING_HEADER.unpack_from(value)
    return _SNAPSHOT.pack(succ, n, fail)
