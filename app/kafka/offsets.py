"""Offsets that cannot skip: nothing is committed past a record an agent did not finish.

Faust 0.15.3 commits the offsets its streams *acknowledged*, and it acknowledges more than it
handled: a record a stream drops because flow control is suspended or its generation is old
(during and right after a rebalance) is acked "so that the lag does not grow", and a jump in the
offsets read is taken for a compaction gap and committed over (Consumer._add_gap). After a
rebalance a record fetched before the seek to the committed offset can reach the stream first
(upstream #216/#221 describe the race; measured here: the survivor of a two-worker group got a
record 15-330 offsets past its committed one on 3 of 4 partitions). Together that is how the
issue's survivor never decided 31 requests, and how a hole at the head of the acked offsets
stopped its commits for good (a restart then re-decided ~3,200).

So, on authpilot's input topics (requests, outcomes, owner batches):
- `OffsetGuard.admit`, called by every agent before it handles a record, lets through only the
  partition's next offset (or one at or before it: a replay). With transactional input
  (AUTHPILOT_INPUT_TRANSACTIONAL) one offset may be skipped: a transaction marker. A record past
  a hole is not handled, so state is never updated out of order (the outcome agent's marks
  assume order); `authpilot_offset_gaps_total` counts it and the partition is re-read from the
  hole: paused until the records already handed to the stream are drained, sought on aiokafka's
  thread, resumed (`authpilot_offset_rewinds_total`). What is read twice is a replay, which the
  agents make harmless (app.state.checkpoint for state, app.state.decided for answers).
- `OffsetGuard.done`, called after the agent finished a record (decision sent, or dead-lettered),
  is the only source of the offset Faust commits for that partition: the next one after the
  last record finished in order. Faust's acks and gap trees are not consulted.
- A watchdog re-reads a partition where Faust acked records at or past the next offset to
  admit while nothing was admitted for STUCK_LOOKS looks (records dropped on the way: the
  skipped-and-acked ones above), and one whose re-read fetched nothing within RETRY_S. A record
  is never skipped unless retention deleted it (it is below the partition's first offset):
  measured, skipping a hole after 3 re-reads lost 2,272 requests that were there all along.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP, AppT

from app.monitoring.metrics import OFFSET_GAPS, OFFSET_REWINDS

log = logging.getLogger(__name__)

# Re-reads of the same hole before it is taken as real (records deleted by retention).
CONFIRM = 3
# A re-read whose records were not fetched after this long is done again.
RETRY_S = 2.0
# Watchdog looks (0.5 s apart) with records acked at or past the next offset to admit and
# nothing admitted, before the partition is re-read. 5 s: a takeover's backlog can hold a
# partition's records in the stream's queue for a few seconds, which is progress to wait for.
STUCK_LOOKS = 10
# Longest a re-read waits for the records already handed to the stream (see _reread).
DRAIN_MAX_S = 10.0


@dataclass
class OffsetGuard:
    """In-order admission, the committed offsets and the re-reads for one Faust app."""

    topics: frozenset[str]
    markers: bool  # input produced transactionally: one offset per marker has no record
    app: Any = None
    expected: dict[TP, int] = field(default_factory=dict)  # next offset to admit
    handled: dict[TP, int] = field(default_factory=dict)  # next offset after the last finished
    pending: set[TP] = field(default_factory=set)  # re-read asked for, its records not back yet
    rereading: set[TP] = field(default_factory=set)  # a re-read is under way
    reread_at: dict[TP, float] = field(default_factory=dict)  # monotonic end of the last re-read
    sought: dict[TP, int] = field(default_factory=dict)  # the offset the last re-read sought to
    stuck: dict[TP, tuple[int, int, int]] = field(default_factory=dict)  # (exp, looks, rereads)
    gaps: int = 0
    rewinds: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _next(self, tp: TP) -> int | None:
        exp = self.expected.get(tp)
        if exp is None and self.app is not None:
            exp = self.app.consumer._committed_offset.get(tp)
        return exp

    def admit(self, tp: TP, offset: int) -> bool:
        """Whether the agent may handle this record now (see the module)."""
        if tp.topic not in self.topics:
            return True
        exp = self._next(tp)
        if exp is not None and offset > exp + (1 if self.markers else 0):
            if tp not in self.pending:  # later records past the same hole wait for that re-read
                self.pending.add(tp)
                self.gaps += 1
                OFFSET_GAPS.labels(tp.topic).inc()
                log.warning("%s: offset %d read before %d..%d; not handled, re-reading", tp,
                            offset, exp, offset - 1)  # fmt: skip
                self.start_reread(tp, exp)
            return False
        self.expected[tp] = offset + 1
        self.pending.discard(tp)
        return True

    def done(self, tp: TP, offset: int) -> None:
        """The agent finished this record: its offset may be committed."""
        if tp.topic in self.topics:
            self.handled[tp] = offset + 1

    def reset(self) -> None:
        """A new assignment: the next offsets are the committed ones again."""
        for d in (self.expected, self.handled, self.sought, self.stuck):
            d.clear()
        self.pending.clear()

    def start_reread(self, tp: TP, offset: int) -> None:
        if tp in self.rereading or self.app is None:
            return
        self.rereading.add(tp)
        task = asyncio.ensure_future(_reread(self.app.consumer, self, tp, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def commit_offset(committed: int | None, handled: int | None) -> int | None:
    """The offset to commit for a guarded partition: the next one after the last record
    finished in order, when that moves the committed offset forward."""
    if handled is None or (committed is not None and handled <= committed):
        return None
    return handled


def guard_offsets(app: AppT, topics: Collection[str], markers: bool = False,
                  every_s: float = 0.5) -> OffsetGuard:  # fmt: skip
    """Install the commit rule on `app`'s consumer and the watchdog timer (see the module)."""
    guard = OffsetGuard(frozenset(topics), markers)
    guard.app = app

    @app.on_partitions_assigned.connect
    async def hook(*args: Any, **kwargs: Any) -> None:
        _patch(app.consumer, guard)
        guard.reset()

    @app.timer(every_s)
    async def watchdog() -> None:
        await check_stuck(app, guard)

    return guard


def _patch(consumer: Any, guard: OffsetGuard) -> None:
    """Wrap this consumer instance's commit-offset choice and gap hook (other apps in the
    process keep theirs)."""
    if getattr(consumer, "_authpilot_offsets", False):
        return
    new_inner = consumer._new_offset
    gap_inner = consumer._add_gap

    def new_offset(tp: TP) -> int | None:
        if tp.topic not in guard.topics:
            return new_inner(tp)
        handled = guard.handled.get(tp)
        acked = consumer._acked.get(tp)
        if acked and handled is not None:  # Faust's bookkeeping below it is settled
            keep = [o for o in acked if o >= handled]
            consumer._acked_index[tp].difference_update(o for o in acked if o < handled)
            acked[:] = keep
        return commit_offset(consumer._committed_offset.get(tp), handled)

    async def add_gap(tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in guard.topics:  # guarded partitions never commit from gap trees
            await gap_inner(tp, offset_from, offset_to)

    consumer._new_offset = new_offset
    consumer._add_gap = add_gap
    consumer._authpilot_offsets = True


async def check_stuck(app: AppT, guard: OffsetGuard) -> None:
    """One watchdog look (see the module)."""
    consumer: Any = app.consumer
    if app.rebalancing or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return
    now = time.monotonic()
    for tp in list(guard.pending - guard.rereading):
        sought, read = guard.sought.get(tp), consumer._read_offset.get(tp)
        if sought is not None and (read is None or read <= sought) \
                and now - guard.reread_at.get(tp, now) > RETRY_S:  # fmt: skip
            guard.start_reread(tp, sought)  # the re-read fetched nothing: again
    for tp in consumer.assignment():
        if tp.topic not in guard.topics or tp in guard.rereading:
            continue
        exp = guard._next(tp)
        acked = consumer._acked.get(tp) or ()
        # Faust acked a record at or past the next offset to admit that the agent never handled
        # (dropped by the stream during a rebalance, or held by admit): the record at `exp`
        # went missing on the way. Records merely queued behind a backlog are not acked yet.
        if exp is None or not any(o >= exp for o in acked):
            guard.stuck.pop(tp, None)
            continue
        last, looks, rereads = guard.stuck.get(tp, (exp, 0, 0))
        if last != exp:
            looks, rereads = 0, 0
        looks += 1
        if looks >= STUCK_LOOKS:
            looks = 0
            rereads += 1
            if rereads > CONFIRM:
                await _skip_if_deleted(consumer, guard, tp, exp)
            guard.start_reread(tp, guard._next(tp) or exp)
        guard.stuck[tp] = (exp, looks, rereads)


async def _skip_if_deleted(consumer: Any, guard: OffsetGuard, tp: TP, exp: int) -> None:
    """After CONFIRM re-reads: move past `exp` only when retention deleted it (it is below the
    partition's first offset). A record that exists is never skipped; it is re-read again."""
    first = (await consumer.earliest_offsets(tp)).get(tp)
    if first is not None and first > exp:
        log.warning("%s: offsets %d-%d were deleted by retention before they were read: skipped",
                    tp, exp, first - 1)  # fmt: skip
        guard.expected[tp] = first
        guard.handled[tp] = first
        guard.pending.discard(tp)


async def _reread(consumer: Any, guard: OffsetGuard, tp: TP, offset: int) -> None:
    log.warning("%s: re-reading from offset %d", tp, offset)
    guard.rewinds += 1
    OFFSET_REWINDS.labels(tp.topic).inc()
    tps = {TP(tp.topic, tp.partition)}  # Faust asserts its own TP type in the active set
    consumer.pause_partitions(tps)
    try:
        # Records of this partition already taken from aiokafka are still being handed to the
        # stream (a backlog can hold them seconds); each one moves Faust's read offset, and a
        # seek before the last of them would be undone. Wait until the read offset is still.
        read = consumer._read_offset
        last, still, waited = read.get(tp), 0, 0.0
        while still < 3 and waited < DRAIN_MAX_S:
            await asyncio.sleep(0.1)
            waited += 0.1
            now = read.get(tp)
            still, last = (still + 1, last) if now == last else (0, now)
        # seek_wait runs the seek on aiokafka's own thread (Consumer.seek calls it from this
        # one, racing the fetcher).
        await consumer.seek_wait({tp: offset})
        consumer._read_offset[tp] = offset
        guard.sought[tp] = offset
    finally:
        consumer.resume_partitions(tps)
        guard.rereading.discard(tp)
        guard.reread_at[tp] = time.monotonic()


def start_new_group_at_end(s: Any, timeout: float = 30.0) -> dict[int, int]:
    """Commit the requests topic's end offsets for partitions the group never committed.

    Faust resets every topic of a new group to `earliest`, which is right for outcomes (state
    learns from all of them) and wrong for requests: a deployment under a new app id re-decided
    every retained request, 7 days of them, for gateways that stopped waiting seconds after each.
    Run before the worker joins (the group is then empty, so the broker takes a commit from a
    consumer that never subscribed); returns partition -> offset set. Two workers starting
    together set the same ends. Never fatal: on failure Faust's reset applies, and is logged.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from app.kafka.connection import confluent_config

    group, topic = s.app_id, s.topic_requests
    c = Consumer({**confluent_config(s), "group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:  # a topic created a moment ago can answer NOT_LEADER for a few seconds
                parts = [TopicPartition(topic, p) for p in range(s.partitions)]
                missing = [tp.partition for tp in c.committed(parts, timeout=10) if tp.offset < 0]
                if not missing:
                    return {}
                ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                        for p in missing}  # fmt: skip
                c.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()],
                         asynchronous=False)  # fmt: skip
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    log.warning("could not start %s's requests at the end (%s); Faust's reset "
                                "applies", group, exc)  # fmt: skip
                    return {}
                time.sleep(0.5)
    finally:
        c.close()
    skipped = sum(ends.values())
    if skipped:
        log.info("new consumer group %s: requests start at the end of %s (%d retained requests "
                 "not decided)", group, topic, skipped)  # fmt: skip
    return ends
