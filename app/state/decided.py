"""Decisions already made: a replayed request gets no second decision, a resent one the same.

The score agent's guarantee is at-least-once in what it reads: after a crash or a takeover the
requests after the last committed offset are read again, and a decision taken again from state
that has moved on can choose another route (measured: 817 request ids with disagreeing routes
after 4 kills). State cannot be rewound, but what was already sent can be read back: decisions
go to the requests' own partition number, with the request's offset in the `authpilot.offset`
header, so when a worker is assigned a request partition it reads that decisions partition from a
little before the first request it will process (its Kafka timestamp minus READ_BACK_SLACK_MS,
through offsets_for_times) to the end, and knows every decision any worker sent for the
requests it is about to read again. Then, per request:
- same request_id at the same offset: a replay. Nothing is sent (the consumer already has it);
  `authpilot_replayed_total{topic=requests}` counts it.
- same request_id at another offset: the gateway sent the request twice. The first decision's
  bytes are sent again: the duplicate is identical.
- otherwise: decided now, and remembered.

Memory: the newest `cap` decisions per partition (AUTHPILOT_DECIDED_PER_PARTITION), about 400
bytes each. A decision that fell out of the map is only needed if its request is read again, i.e.
if more than `cap` requests of one partition are uncommitted at a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

OFFSET_HEADER = "authpilot.offset"
# Decisions are stamped by the worker after it read the request, so a decision of a request
# produced at time t has a timestamp >= t, give or take the gateway/worker clock skew: read
# back from one minute before (NTP keeps skew in milliseconds; a minute costs ~30,000 reads at
# 500 decisions/s per partition, ~0.1 s).
READ_BACK_SLACK_MS = 60_000


class Decided:
    """request_id -> (request offset, decision bytes) of the newest decisions, per partition."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._by_partition: dict[int, OrderedDict[str, tuple[int, bytes]]] = {}

    def partitions(self) -> list[int]:
        return list(self._by_partition)

    def loaded(self, partition: int) -> bool:
        return partition in self._by_partition

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is known of partitions another worker may decide on from now on."""
        for p in partitions:
            self._by_partition.pop(p, None)

    def load(self, partition: int, entries: Iterable[tuple[str, int, bytes]]) -> int:
        """Start a partition's map from decisions read back (oldest first); returns how many."""
        d: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._by_partition[partition] = d
        n = 0
        for rid, offset, value in entries:
            self._put(d, rid, offset, value)
            n += 1
        return n

    def get(self, partition: int, request_id: str) -> tuple[int, bytes] | None:
        d = self._by_partition.get(partition)
        return None if d is None else d.get(request_id)

    def put(self, partition: int, request_id: str, offset: int, value: bytes) -> None:
        d = self._by_partition.get(partition)
        if d is None:
            d = self._by_partition[partition] = OrderedDict()
        self._put(d, request_id, offset, value)

    def _put(self, d: OrderedDict[str, tuple[int, bytes]], rid: str, offset: int,
             value: bytes) -> None:  # fmt: skip
        if rid in d:  # the first decision stays the answer
            return
        d[rid] = (offset, value)
        if len(d) > self.cap:
            d.popitem(last=False)


def source_offset(headers: Any) -> int | None:
    """The request offset a decision names in its `authpilot.offset` header, if any."""
    for k, v in headers or ():
        if k == OFFSET_HEADER and v is not None:
            try:
                return int(v)
            except ValueError:
                return None
    return None


def read_back(conf: dict[str, Any], topic: str, partition: int, since_ms: int, cap: int,
              request_id: Any, timeout: float = 30.0) -> list[tuple[str, int, bytes]]:  # fmt: skip
    """(request_id, request offset, decision bytes) of the decisions in `topic`/`partition`
    stamped from `since_ms` on (at most the newest `cap`), oldest first. `request_id` extracts
    the id from a decision's bytes. Blocking: run it off the event loop."""
    import uuid

    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({**conf, "group.id": f"authpilot-readback-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        if hi <= lo:
            return []
        at = c.offsets_for_times([TopicPartition(topic, partition, since_ms)], timeout=timeout)
        start = at[0].offset if at and at[0].offset >= 0 else hi
        start = max(start, hi - cap, lo)
        if start >= hi:
            return []
        c.assign([TopicPartition(topic, partition, start)])
        out: list[tuple[str, int, bytes]] = []
        deadline = time.monotonic() + timeout
        pos = start
        while pos < hi:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading back {topic}/{partition}: at {pos} of {hi}")
            # Never ask for more than is left: consume() waits out its timeout for the rest.
            for m in c.consume(min(1000, hi - pos), timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pos = hi
                    continue
                pos = (m.offset() or 0) + 1
                off = source_offset(m.headers())
                value = m.value()
                if off is not None and value is not None:
                    out.append((request_id(value), off, value))
        return out
    finally:
        c.close()


class ReadBack:
    """A Decided map fed from its output topic: the first time a partition is needed in an
    assignment, its decisions are read back (see the module)."""

    def __init__(self, decided: Decided, conf: dict[str, Any], topic: str,
                 request_id_of: Any) -> None:  # fmt: skip
        self.decided = decided
        self.conf = conf
        self.topic = topic
        self.request_id_of = request_id_of

    async def ensure(self, partition: int, timestamp_s: float | None) -> None:
        """Load `partition` unless already known; `timestamp_s` is the Kafka timestamp of the
        first input record the agent is about to handle there."""
        if self.decided.loaded(partition):
            return
        t0 = time.perf_counter()
        since = int(timestamp_s * 1000) - READ_BACK_SLACK_MS if timestamp_s else 0
        entries = await asyncio.get_running_loop().run_in_executor(
            None, read_back, self.conf, self.topic, partition, since, self.decided.cap,
            self.request_id_of)  # fmt: skip
        n = self.decided.load(partition, entries)
        log.info("%s/%d: %d answers read back in %.0f ms", self.topic, partition, n,
                 (time.perf_counter() - t0) * 1000)  # fmt: skip


def forget_moved(app: Any, decided: Decided, topic: str) -> None:
    """Forget a partition's answers when it comes back after another worker may have owned it.

    Faust rebalances eagerly (every partition revoked, then assigned): a partition assigned
    again in the very next assignment was consumed by nobody else in between, so its map stays
    (reading it back costs ~0.1-1 s per partition, on the takeover's critical path)."""
    held: set[int] = set()

    @app.on_partitions_assigned.connect
    async def moved(*args: Any, **kwargs: Any) -> None:  # (app, assigned)
        assigned = args[1] if len(args) > 1 else kwargs.get("assigned", set())
        now = {tp.partition for tp in assigned if tp.topic == topic}
        decided.forget({p for p in decided.partitions() if p not in now or p not in held})
        held.clear()
        held.update(now)
