"""The chaos suite's Kafka side: a producer that records where each message landed, topics read
back whole, a group's committed offsets and members' assignments.

Reading back assigns every partition from its low watermark to the high watermark taken at the
start (no group, nothing committed), so what the verifier sees is exactly what the topic
holds. The ledger producer keeps (partition, offset) of every message from its delivery report:
the verifier matches dead letters to injected messages by source offset.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from app.config import Settings
from app.kafka.connection import confluent_config

Header = tuple[str, bytes | None]

# A 1,000,000-byte field makes a ~1,000,300-byte message: over librdkafka's default
# message.max.bytes (1,000,000), under the broker's default max.message.bytes (1,048,588).
MAX_MESSAGE_BYTES = 1_048_000


@dataclass(frozen=True)
class Msg:
    """One message as read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp: int = 0


@dataclass
class Sent:
    """One message the suite produced; partition/offset filled in by its delivery report."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    case: str | None = None  # malformation case name; None for a valid message
    request_id: str | None = None  # the id a decodable case carries (a decision for it = bad)
    partition: int = -1
    offset: int = -1
    error: str | None = None


class LedgerProducer:
    """confluent-kafka producer (idempotent) that keeps a Sent per message."""

    def __init__(self, s: Settings, linger_ms: int = 5) -> None:
        self._p = Producer({**confluent_config(s), "linger.ms": linger_ms,
                            "enable.idempotence": True, "message.max.bytes": MAX_MESSAGE_BYTES,
                            "queue.buffering.max.messages": 200_000})  # fmt: skip
        self.sent: list[Sent] = []

    def send(self, item: Sent, on_delivered: Any = None) -> Sent:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                item.error = str(err)
            else:
                item.partition, item.offset = msg.partition(), msg.offset()
            if on_delivered is not None:
                on_delivered(item)

        headers: Any = list(item.headers) if item.headers else None
        while True:
            try:
                self._p.produce(item.topic, key=item.key, value=item.value, headers=headers,
                                on_delivery=report)  # fmt: skip
                break
            except BufferError:
                self._p.poll(0.05)
        self._p.poll(0)
        self.sent.append(item)
        return item

    def poll(self, timeout: float = 0) -> None:
        self._p.poll(timeout)

    def flush(self, timeout: float = 60) -> int:
        return int(self._p.flush(timeout))


def _consumer(s: Settings, **extra: Any) -> Consumer:
    return Consumer({**confluent_config(s), "group.id": f"chaos-reader-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "fetch.message.max.bytes": MAX_MESSAGE_BYTES * 2, **extra})  # fmt: skip


def partitions(s: Settings, topic: str) -> list[int]:
    c = _consumer(s)
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            return []
        return sorted(md.partitions)
    finally:
        c.close()


def end_offsets(s: Settings, topic: str) -> dict[int, int]:
    """partition -> high watermark."""
    c = _consumer(s)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions(s, topic)}  # fmt: skip
    finally:
        c.close()


def read_all(s: Settings, topic: str, timeout: float = 120.0) -> list[Msg]:
    """Every message of `topic` up to the high watermarks as they are now, in partition order."""
    c = _consumer(s)
    out: list[Msg] = []
    try:
        parts = partitions(s, topic)
        want: dict[int, int] = {}
        assign = []
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                want[p] = high
                assign.append(TopicPartition(topic, p, low))
        if not assign:
            return []
        c.assign(assign)
        pos = {p: -1 for p in want}
        deadline = time.monotonic() + timeout
        while any(pos[p] < want[p] - 1 for p in want):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: {pos} of {want} after {timeout:.0f}s")
            for m in c.consume(1000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                p, off = int(m.partition() or 0), int(m.offset() or 0)
                if off >= want.get(p, 0):
                    continue
                pos[p] = max(pos[p], off)
                raw: list[tuple[str, Any]] = list(m.headers() or [])  # type: ignore[arg-type]
                hdrs = tuple((str(k), v.encode() if isinstance(v, str) else v) for k, v in raw)
                out.append(Msg(topic, p, off, m.key(), m.value(), hdrs, m.timestamp()[1]))
    finally:
        c.close()
    out.sort(key=lambda m: (m.partition, m.offset))
    return out


def committed(s: Settings, group: str, topic: str) -> dict[int, int | None]:
    """partition -> the group's committed offset (None: nothing committed)."""
    parts = partitions(s, topic)
    if not parts:
        return {}
    c = Consumer({**confluent_config(s), "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in got}
    finally:
        c.close()


@dataclass
class Member:
    member_id: str
    partitions: dict[str, list[int]] = field(default_factory=dict)


def group_members(s: Settings, group: str) -> tuple[str, list[Member]]:
    """(state, members with their assigned partitions per topic) of a consumer group."""
    admin = AdminClient({**confluent_config(s)})
    d = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    members = []
    for m in d.members:
        parts: dict[str, list[int]] = {}
        for tp in m.assignment.topic_partitions if m.assignment else []:
            parts.setdefault(tp.topic, []).append(tp.partition)
        members.append(Member(m.member_id, {t: sorted(v) for t, v in parts.items()}))
    return str(getattr(d.state, "name", d.state)), members
