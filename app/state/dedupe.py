"""Outcome dedupe by request_id: a redelivered outcome changes no state and emits nothing.

A gateway that retries a produce, or a replaying operator, can deliver one outcome twice at
two offsets; the checkpoint marks (app.state.checkpoint) only recognise the same offset again.
The ids of a card's recent outcomes are kept in the card's own value (outcomes are keyed by
card, so the card's partition sees every copy of its outcomes): 8-byte hashes of request_id
with their event_time, the ones within AUTHPILOT_OUTCOME_DEDUPE_HOURS of the card's newest
outcome, at most AUTHPILOT_OUTCOME_DEDUPE_PER_CARD of them (the newest). Persisted and
checkpointed with the card's state, so the window survives restarts and rebalances.
"""

from __future__ import annotations

import hashlib
import struct

_ENTRY = struct.Struct(">Qq")  # request_id hash, event_time (ms)


def seen_key(card: str) -> bytes:
    """The key of a card's recent outcome ids (grouped with the card's entities)."""
    return f"card_seen|{card}".encode()


def id_hash(request_id: str) -> int:
    """64 bits of BLAKE2b: a false duplicate needs ~2^32 ids in one card's window."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")


def contains(value: bytes | None, h: int) -> bool:
    if not value:
        return False
    return any(x == h for x, _ in _ENTRY.iter_unpack(value))


def add(value: bytes | None, h: int, t_ms: int, window_ms: int, cap: int) -> bytes:
    """The window after one more outcome: entries within window_ms of the newest time kept,
    then the newest `cap` of them."""
    entries = list(_ENTRY.iter_unpack(value)) if value else []
    entries.append((h, t_ms))
    newest = max(t for _, t in entries)
    kept = [(x, t) for x, t in entries if t > newest - window_ms]
    if len(kept) > cap:
        kept.sort(key=lambda e: e[1])
        kept = kept[-cap:]
    return b"".join(_ENTRY.pack(x, t) for x, t in kept)
