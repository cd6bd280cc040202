"""The dead-letter sink: a message that cannot be processed is kept, with why and where.

Delivery: at-least-once, like everything the worker produces; the record carries the source
topic/partition/offset so a duplicate is recognisable and a replay tool can find the original.

What is kept (schemas/DeadLetter.avsc, version 2): the key, the value and every header as sent
(order, duplicate keys, null values: a list, not a map), each cut to a bound with its original
size recorded, so a record stays far under the producer's 1 MB limit whatever came in (at most
4 KB of key, 256 KB of value, 64 KB of headers, 2,000 characters of detail: ~330 KB). Incoming
headers are data: the dead letter's own Kafka headers are only the two the worker sets
(authpilot.reason, authpilot.source), so a forged incoming `authpilot.reason` cannot pass for
the worker's verdict.

The sink never raises for what it was given: if producing the record fails anyway (a broker
with a smaller message.max.bytes, a producer error), a minimal record (no key, value or headers;
sizes, reason, the error) is sent instead; only if that fails too is the loss logged, never
raised into the agent (an exception there would stop it, and its offset would be committed past
the message: gone with no trace).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from app.contracts.codec import Serde
from app.monitoring.metrics import DEAD_LETTERS, EVENTS_OUT

log = logging.getLogger(__name__)

KEY_KEEP = 4096  # any valid key (a card fingerprint, <= 128 characters) is kept whole
VALUE_KEEP = 262_144  # >= AUTHPILOT_MAX_INPUT_BYTES's upper bound: an accepted size is kept whole
HEADER_KEY_KEEP = 256
HEADER_VALUE_KEEP = 8192
HEADERS_KEEP = 65_536  # bytes of header keys + values kept; the headers past it are left out
DETAIL_KEEP = 2000


def _as_bytes(v: Any) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    return str(v).encode()


def _items(raw: Any) -> list[tuple[Any, Any]]:
    if not raw:
        return []
    return list(raw.items() if isinstance(raw, dict) else raw)


def kept_headers(raw: Any) -> tuple[list[dict[str, Any]], int, int, bool]:
    """The headers as the record keeps them: (header_list, original count, original bytes,
    cut or left out). Order, duplicates and null values are kept."""
    items = _items(raw)
    out: list[dict[str, Any]] = []
    size = 0
    kept = 0
    cut = False
    for k, v in items:
        key = k if isinstance(k, str) else (_as_bytes(k) or b"").decode("utf-8", "replace")
        value = _as_bytes(v)
        n = len(key.encode()) + (0 if value is None else len(value))
        size += n
        short_key = key[:HEADER_KEY_KEEP]
        short_value = None if value is None else value[:HEADER_VALUE_KEEP]
        m = len(short_key.encode()) + (0 if short_value is None else len(short_value))
        if kept + m > HEADERS_KEEP:
            cut = True
            continue
        cut = cut or short_key != key or short_value != value
        kept += m
        out.append({"key": short_key, "value": short_value})
    return out, len(items), size, cut


def dead_letter_record(topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None, headers: Any, reason: str, detail: str,
                       failed_at: int, worker: str) -> dict[str, Any]:  # fmt: skip
    """The DeadLetter (version 2) of one message: everything bounded, sizes recorded."""
    header_list, count, hsize, hcut = kept_headers(headers)
    k = _as_bytes(key)
    v = _as_bytes(value)
    short_k = None if k is None else k[:KEY_KEEP]
    short_v = None if v is None else v[:VALUE_KEEP]
    return {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": short_k,
        "value": short_v,
        "headers": {},
        "reason": reason,
        "detail": detail[:DETAIL_KEEP],
        "failed_at": failed_at,
        "worker": worker,
        "header_list": header_list,
        "key_size": None if k is None else len(k),
        "value_size": None if v is None else len(v),
        "header_count": count,
        "headers_size": hsize,
        "truncated": hcut or short_k != k or short_v != v,
    }


def minimal_record(full: dict[str, Any], error: str) -> dict[str, Any]:
    """The last resort when `full` could not be produced: coordinates, reason, sizes, no
    bytes of the original."""
    return dict(
        full,
        key=None,
        value=None,
        header_list=[],
        truncated=True,
        detail=f"{full['detail'][:1000]} [the full dead letter failed: {error[:500]}]",
    )


def sink_headers(reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The dead letter's Kafka headers: only these, set by the worker."""
    return [
        ("authpilot.reason", reason.encode()),
        ("authpilot.source", f"{topic}/{partition}/{offset}".encode()),
    ]


class DeadLetterSink:
    """Builds DeadLetter records and sends them through a Faust topic."""

    def __init__(self, topic: Any, serde: Serde, worker: str | None = None) -> None:
        self._topic = topic
        self._serde = serde
        self._worker = worker or socket.gethostname()
        self._out = EVENTS_OUT.labels(topic.get_topic_name())

    def record(self, message: Any, reason: str, detail: str) -> dict[str, Any]:
        return dead_letter_record(message.topic, message.partition, message.offset, message.key,
                                  message.value, message.headers, reason, detail,
                                  int(time.time() * 1000), self._worker)  # fmt: skip

    async def _produce(self, rec: dict[str, Any], headers: list[tuple[str, bytes]]) -> None:
        await self._topic.send(key=rec["key"], value=self._serde.encode(rec), headers=headers)
        DEAD_LETTERS.labels(rec["reason"]).inc()
        self._out.inc()

    async def send(self, message: Any, reason: str, detail: str) -> None:
        """Dead-letter one message; the counter rises and the caller's stream goes on. Never
        raises (see the module docstring)."""
        where = f"{message.topic}/{message.partition}/{message.offset}"
        headers = sink_headers(reason, message.topic, message.partition, message.offset)
        rec = self.record(message, reason, detail)
        try:
            await self._produce(rec, headers)
            return
        except Exception as exc:  # whatever the producer raised (MessageSizeTooLargeError...)
            error = f"{type(exc).__name__}: {exc}"
            log.error("dead letter of %s (%s) failed, sending a minimal one: %s", where,
                      reason, error)  # fmt: skip
        try:
            await self._produce(minimal_record(rec, error), headers)
        except Exception as exc:
            log.critical("LOST: %s (%s: %s) could not be dead-lettered: %s", where, reason,
                         detail[:500], f"{type(exc).__name__}: {exc}")  # fmt: skip
