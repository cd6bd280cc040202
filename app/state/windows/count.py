"""Sliding-window success statistics per route x issuer key, packed into one table value.

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


def outcome_code(rec: dict[str, Any]) -> int:
    """Approved, declined by the issuer, or failed on the route (acquirer/processor side)."""
    if rec["approved"]:
        return APPROVED
    return ROUTE_FAILURE if rec["failure_side"] == "ROUTE" else ISSUER_DECLINE


def stat_keys(route: str, bin_: str, network: str, issuer_country: str) -> tuple[str, str, str]:
    """The three keys (most specific first) an outcome updates and a request reads."""
    return (f"{route}|bin:{bin_}", f"{route}|cc:{network}:{issuer_country}", f"{route}|all")


def ring_update(value: bytes | None, code: int, window: int) -> tuple[bytes, int]:
    """Push one outcome into the ring; returns the new value and its update count."""
    if value is None or len(value) != _RING_HEADER.size + window:
        updates, pos, n, succ, fail = 0, 0, 0, 0, 0
        ring = bytearray(window)
        if value is not None:  # window size changed: keep the newest outcomes that fit
            old_updates, old_pos, old_n, _, _ = _RING_HEADER.unpack_from(value)
            old = value[_RING_HEADER.size :]
            size = len(old)
            ordered = [old[(old_pos - old_n + i) % size] for i in range(old_n)][-window:]
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
    ring[pos] = code
    succ += code == APPROVED
    fail += code == ROUTE_FAILURE
    pos = (pos + 1) % window
    updates = (updates + 1) & 0xFFFFFFFF
    return _RING_HEADER.pack(updates, pos, n, succ, fail) + bytes(ring), updates


def ring_snapshot(value: bytes) -> Snapshot:
    """The window's totals, read from the header (O(1))."""
    _, _, n, succ, fail = _RING_HEADER.unpack_from(value)
    return Snapshot(succ, n, fail)


def pack_snapshot(s: Snapshot) -> bytes:
    return _SNAPSHOT.pack(*s)


def unpack_snapshot(value: bytes | None) -> Snapshot | None:
    return None if value is None else Snapshot(*_SNAPSHOT.unpack(value))
