"""Small confluent-kafka helpers for integration tests: produce, and read a topic to the end."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from app.config import Settings
from app.kafka.connection import confluent_config


def produce(s: Settings, topic: str, items: list[tuple[bytes | str | None, bytes]]) -> None:
    p = Producer({**confluent_config(s), "linger.ms": 5})
    for key, value in items:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0, "messages still in the producer queue after 30 s"


def read_topic(s: Settings, topic: str, expect: int, timeout: float = 60.0,
               settle: float = 2.0) -> list[Any]:  # fmt: skip
    """Read from the beginning until `expect` messages arrived and `settle` s pass quietly
    (so extra, duplicate messages are caught too), or until timeout."""
    c = Consumer(
        {
            **confluent_config(s),
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        msgs = c.consume(500, timeout=0.2)
        msgs = [m for m in msgs if m.error() is None]
        if msgs:
            out.extend(msgs)
            quiet_since = None
            continue
        if len(out) >= expect:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                break
    c.close()
    return out


def partition_ends(s: Settings, topic: str) -> list[int]:
    """The high watermark of each partition of `topic`, in partition order."""
    from confluent_kafka import TopicPartition

    c = Consumer({**confluent_config(s), "group.id": f"test-ends-{uuid.uuid4().hex[:8]}"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in sorted(meta.partitions)]  # fmt: skip
    finally:
        c.close()


def topic_end(s: Settings, topic: str) -> int:
    """Messages ever written to `topic` (the sum of its partitions' high watermarks)."""
    return sum(partition_ends(s, topic))
