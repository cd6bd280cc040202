"""The event log straight from the Kafka topics (decisions, outcomes, shadow; retry decisions
and outcomes for the retry report).

Every partition is read from its low to its high watermark as they were when the read started
(later messages are left for the next report), with a throwaway consumer group that commits
nothing; undecodable messages are counted and skipped, never fatal. A separate module from
eventlog so reading a directory needs no Kafka client. read_topic also reads from given start
to given end offsets: app.lifecycle.export resumes from the offsets its last run ended at.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.experiments.eventlog import REQUIRED, EventLog, Progress, ReportError, concat, to_frame

if TYPE_CHECKING:
    from confluent_kafka import Consumer


def _connect(settings: Any, bootstrap: str | None) -> tuple[Any, dict[str, str], Any]:
    """(settings with `bootstrap` if given, the client config, the codec)."""
    from app.contracts.codec import Codec
    from app.kafka.connection import confluent_config

    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    return settings, confluent_config(settings), Codec(settings)


def read_kafka(
    settings: Any,
    bootstrap: str | None = None,
    need_shadow: bool = False,
    progress: Progress | None = None,
    idle_timeout: float = 60.0,
) -> EventLog:
    """Read the decisions, outcomes (and shadow) topics from the beginning to the end offsets
    they had when the read started."""
    settings, conf, codec = _connect(settings, bootstrap)
    topics = {
        "decisions": (settings.topic_decisions, codec.decision),
        "outcomes": (settings.topic_outcomes, codec.outcome),
        "shadow": (settings.topic_shadow, codec.decision),
    }
    frames, dropped = {}, {}
    for kind, (topic, serde) in topics.items():
        rows, bad = _read_topic(
            conf, topic, serde.decode, kind == "shadow" and not need_shadow, progress, idle_timeout
        )
        df = pd.DataFrame(rows).reindex(columns=list(REQUIRED[kind])) if rows else None
        frames[kind], dropped[kind] = to_frame(kind, [df] if df is not None else [])
        dropped[kind] += bad
    source = f"kafka {conf['bootstrap.servers']}"
    return EventLog(frames["decisions"], frames["outcomes"], frames["shadow"], dropped, source)


def read_retry_kafka(
    settings: Any,
    bootstrap: str | None = None,
    progress: Progress | None = None,
    idle_timeout: float = 60.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(retry decisions, outcomes) of app.experiments.retries from the retry-decisions and
    outcomes topics, each up to the end offsets it had when its read started. Retry decisions
    are read first: the worker sends one only after its decline reached the outcomes topic, so
    every decision read finds its decline; an answer that arrives after the outcomes' read
    counts as pending."""
    settings, conf, codec = _connect(settings, bootstrap)
    frames = []
    for kind, topic, serde in (
        ("retry_decisions", settings.topic_retry_decisions, codec.retry),
        ("retry_outcomes", settings.topic_outcomes, codec.outcome),
    ):
        rows, _ = _read_topic(conf, topic, serde.decode, False, progress, idle_timeout)
        frames.append(concat(kind, [pd.DataFrame(rows).reindex(columns=list(REQUIRED[kind]))]
                             if rows else []))  # fmt: skip
    return frames[0], frames[1]


def _read_topic(
    conf: dict[str, str],
    topic: str,
    decode: Callable[[bytes | None], dict[str, Any]],
    optional: bool,
    progress: Progress | None,
    idle_timeout: float,
) -> tuple[list[dict[str, Any]], int]:
    """(decoded records, undecodable count) of one topic up to its current end offsets."""
    got = read_topic(conf, topic, decode, optional, progress, idle_timeout)
    return got.rows, got.bad


@dataclass(frozen=True)
class TopicRead:
    """What read_topic read of one topic. `start`: per partition, the first offset read (the
    low watermark where the requested one was already deleted); `end`: where the next read
    starts. A missing optional topic reads as nothing, `exists` False."""

    rows: list[dict[str, Any]]
    bad: int  # undecodable messages, skipped
    start: dict[int, int]
    end: dict[int, int]
    exists: bool = True


def _consumer(conf: dict[str, str]) -> Consumer:
    from confluent_kafka import Consumer

    return Consumer(
        {
            **conf,
            "group.id": f"authpilot-report-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )


def _watermarks(
    c: Consumer, conf: dict[str, str], topic: str, optional: bool
) -> dict[int, tuple[int, int]] | None:
    """(low, high) watermark per partition; None for a missing optional topic."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        meta = c.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            if optional:
                return None
            raise ReportError(f"topic {topic} does not exist on {conf['bootstrap.servers']}")
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            for p in sorted(meta.partitions)
        }
    except KafkaException as exc:
        raise ReportError(f"cannot reach Kafka at {conf['bootstrap.servers']}: {exc}") from exc


def end_offsets(conf: dict[str, str], topic: str, optional: bool = False) -> dict[int, int] | None:
    """The high watermark per partition now (None: a missing optional topic). Taking several
    topics' ends before reading any lets a reader cut them at one moment."""
    c = _consumer(conf)
    try:
        marks = _watermarks(c, conf, topic, optional)
        return None if marks is None else {p: hi for p, (_, hi) in marks.items()}
    finally:
        c.close()


def read_topic(
    conf: dict[str, str],
    topic: str,
    decode: Callable[[bytes | None], dict[str, Any]],
    optional: bool = False,
    progress: Progress | None = None,
    idle_timeout: float = 60.0,
    start: Mapping[int, int] | None = None,
    end: Mapping[int, int] | None = None,
) -> TopicRead:
    """Decode one topic from `start` (per partition; absent: the low watermark) to `end`
    (exclusive; None: the high watermarks when the read starts, every partition; given, only
    its partitions). A start past the partition's end is refused: the topic was recreated,
    or the offsets are another cluster's."""
    from confluent_kafka import KafkaError, TopicPartition

    start = start or {}
    c = _consumer(conf)
    try:
        marks = _watermarks(c, conf, topic, optional)
        if marks is None:
            return TopicRead([], 0, {}, {}, exists=False)
        stop = {p: hi for p, (_, hi) in marks.items()} if end is None else dict(end)
        first: dict[int, int] = {}
        for part, hi in stop.items():
            lo = marks.get(part, (0, 0))[0]
            want = start.get(part, lo)
            if want > hi:
                raise ReportError(
                    f"{topic} partition {part}: start offset {want} is past the end offset {hi} "
                    "(topic recreated, or offsets of another cluster?)"
                )
            first[part] = max(want, lo)
        todo = {part: hi for part, hi in stop.items() if hi > first[part]}
        after = {part: max(first[part], hi) for part, hi in stop.items()}
        total = sum(hi - first[part] for part, hi in todo.items())
        if not todo:
            return TopicRead([], 0, first, after)
        c.assign([TopicPartition(topic, part, first[part]) for part in sorted(todo)])
        rows: list[dict[str, Any]] = []
        bad = seen = 0
        last_msg = last_note = time.monotonic()
        while todo:
            msgs = c.consume(1000, timeout=1.0)
            now = time.monotonic()
            if not msgs and now - last_msg > idle_timeout:
                raise ReportError(
                    f"{topic}: nothing arrived for {idle_timeout:.0f} s with "
                    f"partitions {sorted(todo)} short of their end offsets"
                )
            for m in msgs:
                p, offset, err = m.partition(), m.offset(), m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if p is not None:  # also ends a partition whose last offset is a marker
                            todo.pop(p, None)
                        continue
                    raise ReportError(f"{topic}: {err}")
                if p is None or offset is None:  # librdkafka sets both on every fetched message
                    raise ReportError(f"{topic}: a message without partition or offset")
                last_msg = now
                if p not in todo or offset >= todo[p]:
                    # arrived after the read started; past a transaction marker at the end
                    # it also ends the partition (no EOF comes while producers write)
                    todo.pop(p, None)
                    continue
                seen += 1
                try:
                    rows.append(decode(m.value()))  # a tombstone (None) is a DecodeError too
                except ValueError:  # codec.DecodeError: a dead letter, not our business here
                    bad += 1
                if offset >= todo[p] - 1:
                    todo.pop(p)
            if progress and (now - last_note > 2.0 or not todo):
                last_note = now
                progress(f"{topic}: {seen:,}/{total:,} messages ({seen / total:.0%})")
        return TopicRead(rows, bad, first, after)
    finally:
        c.close()
