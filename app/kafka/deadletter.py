"""The dead-letter sink: a message that cannot be processed is kept whole, with why and where.

Delivery: at-least-once, like everything the worker produces; the record carries the source
topic/partition/offset so a duplicate is recognisable and a replay tool can find the original.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from app.contracts.codec import Serde
from app.monitoring.metrics import DEAD_LETTERS, EVENTS_OUT


def _headers(raw: Any) -> dict[str, bytes]:
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, dict) else raw
    return {str(k): (v if isinstance(v, bytes) else str(v).encode()) for k, v in items}


class DeadLetterSink:
    """Builds DeadLetter records and sends them through a Faust topic."""

    def __init__(self, topic: Any, serde: Serde, worker: str | None = None) -> None:
        self._topic = topic
        self._serde = serde
        self._worker = worker or socket.gethostname()
        self._out = EVENTS_OUT.labels(topic.get_topic_name())

    def record(self, message: Any, reason: str, detail: str) -> dict[str, Any]:
        return {
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "key": message.key,
            "value": message.value,
            "headers": _headers(message.headers),
            "reason": reason,
            "detail": detail[:2000],
            "failed_at": int(time.time() * 1000),
            "worker": self._worker,
        }

    async def send(self, message: Any, reason: str, detail: str) -> None:
        """Dead-letter one message; the counter rises and the caller's stream goes on."""
        value = self._serde.encode(self.record(message, reason, detail))
        await self._topic.send(
            key=message.key,
            value=value,
            headers=[
                ("authpilot.reason", reason.encode()),
                (
                    "authpilot.source",
                    f"{message.topic}/{message.partition}/{message.offset}".encode(),
                ),
            ],
        )
        DEAD_LETTERS.labels(reason).inc()
        self._out.inc()
