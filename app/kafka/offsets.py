"""Offsets that cannot skip: no commit past a message that was never processed.

Faust 0.15.3 takes any jump in the offsets it reads for a *gap*, offsets with no record
(compaction, transaction markers), and commits over it as if those offsets were processed
(Consumer._add_gap / _new_offset). After a rebalance a record fetched before the seek to the
committed offset can reach the stream first (upstream #216/#221 describe the same race): the jump
from the committed offset to that record was then committed over, and the survivor of a two-worker
group never decided 31 requests in one measured run; in two others a hole at the head of the
acknowledged offsets stopped its commits for good and a restart re-decided ~3,200 requests.

authpilot's input topics (requests, outcomes, owner batches) are never compacted, and each
record's offset is the previous one's plus one unless a gateway produces transactionally (then
one offset per transaction marker has no record: AUTHPILOT_INPUT_TRANSACTIONAL). Measured with
two workers and a SIGKILL: after the rebalance the survivor received, on 3 of 4 partitions, a
record ~80 offsets past its committed one (the rest of a batch fetched before the seek). So:
- Faust's gap hook trusts no jump (with transactional input, none over one offset), and its
  choice of the offset to commit refuses a hole at the committed offset itself (Faust lets a
  one-offset one through): nothing is committed past a record that was not processed.
- `OffsetGuard.admit`, called by every agent before it handles a message, lets through only
  the next offset of each partition (or one it already passed: a replay). A record past a hole
  is not handled, so state is never updated out of order (the outcome agent's marks assume
  order), `authpilot_offset_gaps_total` counts it, and the partition is re-read from the
  committed offset: paused until the records already handed to the stream are drained, sought,
  resumed (`authpilot_offset_rewinds_total`). What is read twice is a replay, which the agents
  make harmless (app.state.checkpoint for state, app.state.decided for decisions).
- A watchdog re-reads a partition whose hole is still there at two consecutive looks (a seek
  that lost the race with a batch in flight), and a hole that `CONFIRM` re-reads find again is
  real (records deleted by retention under a consumer that fell that far behind): accepted and
  logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP, AppT

from app.monitoring.metrics import OFFSET_GAPS, OFFSET_REWINDS

log = logging.getLogger(__name__)

# Re-reads of the same hole before it is accepted as real (records deleted by retention).
CONFIRM = 3
# A re-read whose records were not fetched after this long is done again.
RETRY_S = 2.0
# Watchdog looks (0.5 s apart) a hole must stay unchanged, with nothing admitted on its partition,
# before the partition is re-read.
STUCK_LOOKS = 6
# Longest a re-read waits for the records already handed to the stream (see _reread).
DRAIN_MAX_S = 10.0


@dataclass
class Hole:
    committed: int
    first_acked: int
    expected: int  # OffsetGuard.expected when seen: unchanged = nothing admitted since
    seen: int = 1  # consecutive watchdog looks that found it unchanged
    rewinds: int = 0


@dataclass
class OffsetGuard:
    """The gap policy, the in-order admission and the watchdog for one Faust app's consumer."""

    topics: frozenset[str]
    markers: bool  # input produced transactionally: one offset per marker has no record
    app: Any = None
    expected: dict[TP, int] = field(default_factory=dict)  # next offset to admit
    holes: dict[TP, Hole] = field(default_factory=dict)
    rereading: set[TP] = field(default_factory=set)  # a re-read is under way
    pending: set[TP] = field(default_factory=set)  # re-read asked for, its records not back yet
    reread_at: dict[TP, float] = field(default_factory=dict)  # monotonic end of the last re-read
    sought: dict[TP, int] = field(default_factory=dict)  # the offset the last re-read sought to
    accepted: set[TP] = field(default_factory=set)  # partitions with a confirmed gap
    gaps: int = 0
    rewinds: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def admit(self, tp: TP, offset: int) -> bool:
        """Whether the agent may handle this record now: the partition's next offset, or one
        at or before it (a replay). A record past a hole is left unhandled and the partition is
        re-read (see the module)."""
        if tp.topic not in self.topics:
            return True
        exp = self.expected.get(tp)
        if exp is None:
            exp = self.app.consumer._committed_offset.get(tp) if self.app is not None else None
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

    def start_reread(self, tp: TP, offset: int) -> None:
        if tp in self.rereading or self.app is None:
            return
        self.rereading.add(tp)
        task = asyncio.ensure_future(_reread(self.app.consumer, self, tp, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def hole_at_head(committed: int | None, acked: Collection[int],
                 markers: bool = False) -> tuple[int, int] | None:  # fmt: skip
    """(committed, first acknowledged offset) when offsets from the committed one on were never
    acknowledged, else None. With transactional input one missing offset is a marker."""
    if committed is None or not acked:
        return None
    first = min(acked)
    return (committed, first) if first - committed > (1 if markers else 0) else None


def trusted_gap(offset_from: int, offset_to: int, markers: bool) -> bool:
    """Whether Faust may treat a jump as offsets without records. Faust calls its gap hook with
    the last offset read + 1 and the offset just read: offset_from..offset_to - 1 are missing.
    Only with transactional input (`markers`) is one missing offset normal."""
    return markers and offset_to - offset_from <= 1


def guard_offsets(app: AppT, topics: Collection[str], markers: bool = False,
                  every_s: float = 0.5) -> OffsetGuard:  # fmt: skip
    """Install the gap policy on `app`'s consumer and the watchdog timer (see the module)."""
    guard = OffsetGuard(frozenset(topics), markers)
    guard.app = app

    @app.on_partitions_assigned.connect
    async def hook(*args: Any, **kwargs: Any) -> None:
        _patch(app.consumer, guard)
        guard.holes.clear()
        guard.pending.clear()
        guard.sought.clear()
        guard.expected.clear()  # the next offsets are the committed ones again

    @app.timer(every_s)
    async def watchdog() -> None:
        await check_holes(app, guard)

    return guard


def _patch(consumer: Any, guard: OffsetGuard) -> None:
    """Wrap this consumer instance's gap hook and commit-offset choice (other apps in the
    process keep theirs)."""
    if getattr(consumer, "_authpilot_gaps", False):
        return
    add_inner: Callable[[TP, int, int], Awaitable[None]] = consumer._add_gap
    new_inner: Callable[[TP], int | None] = consumer._new_offset

    async def add_gap(tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in guard.topics or trusted_gap(offset_from, offset_to, guard.markers):
            await add_inner(tp, offset_from, offset_to)
        elif tp in guard.accepted:
            log.warning("%s: offsets %d-%d accepted as a gap", tp, offset_from, offset_to - 1)
            await add_inner(tp, offset_from, offset_to)

    def new_offset(tp: TP) -> int | None:
        if tp.topic in guard.topics and not guard.markers:
            committed = consumer._committed_offset.get(tp)
            acked = consumer._acked.get(tp)
            if committed is not None and acked and not consumer._gap.get(tp) \
                    and min(acked) > committed:  # fmt: skip
                return None  # the committed offset itself was never processed
        return new_inner(tp)

    consumer._add_gap = add_gap
    consumer._new_offset = new_offset
    consumer._authpilot_gaps = True


async def check_holes(app: AppT, guard: OffsetGuard) -> None:
    """One watchdog look: re-read a partition whose hole has not moved for `STUCK_LOOKS` looks
    while nothing was admitted on it (records of a re-read can queue behind a takeover's
    backlog for seconds; that is progress to wait for, not a failed seek)."""
    consumer: Any = app.consumer
    if app.rebalancing or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return
    now = time.monotonic()
    for tp in list(guard.pending - guard.rereading):
        # A re-read whose records were not even fetched within RETRY_S did not take: do it
        # again. Fetched but not yet admitted is fine: after a takeover they queue behind the
        # backlog of every partition for seconds (re-reading then only adds duplicates).
        sought, read = guard.sought.get(tp), consumer._read_offset.get(tp)
        if sought is not None and (read is None or read <= sought) \
                and now - guard.reread_at.get(tp, now) > RETRY_S:  # fmt: skip
            guard.start_reread(tp, sought)
    assigned = consumer.assignment()
    seen: dict[TP, Hole] = {}
    for tp, acked in list(consumer._acked.items()):
        if tp.topic not in guard.topics or tp not in assigned:
            continue
        found = hole_at_head(consumer._committed_offset.get(tp), acked, guard.markers)
        if found is None:
            continue
        at = guard.expected.get(tp, -1)
        old = guard.holes.get(tp)
        if old is not None and (old.committed, old.first_acked, old.expected) == (*found, at):
            old.seen += 1
            seen[tp] = old
        else:
            seen[tp] = Hole(*found, expected=at, rewinds=old.rewinds if old else 0)
    guard.holes = seen
    for tp, hole in seen.items():
        if hole.seen < STUCK_LOOKS or tp in guard.rereading:
            continue
        hole.seen = 0
        hole.rewinds += 1
        if hole.rewinds > CONFIRM:
            log.warning("%s: offsets %d-%d missing after %d re-reads: accepted as a gap", tp,
                        hole.committed, hole.first_acked - 1, CONFIRM)  # fmt: skip
            guard.accepted.add(tp)
            guard.expected[tp] = hole.first_acked
            await consumer._add_gap(tp, hole.committed, hole.first_acked)
            continue
        guard.start_reread(tp, hole.committed)


async def _reread(consumer: Any, guard: OffsetGuard, tp: TP, offset: int) -> None:
    log.warning("%s: offsets from %d on were not all processed; re-reading from %d", tp, offset,
                offset)  # fmt: skip
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
        # one, racing the fetcher: measured, such re-reads often did not take).
        await consumer.seek_wait({tp: offset})
        consumer._read_offset[tp] = offset
        guard.sought[tp] = offset
        # guard.expected stays: records past the hole were never admitted, so it still names
        # the offset the re-read starts at (or one before it, for the watchdog's re-reads).
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
