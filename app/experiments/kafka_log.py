"""The event log straight from the Kafka topics (decisions, outcomes, shadow).

Every partition is read from its low to its high watermark as they were when the read started
(later messages are left for the next report), with a throwaway consumer group that commits
nothing; undecodable messages are counted and skipped, never fatal. A separate module from
eventlog so reading a directory needs no Kafka client.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd

from app.experiments.eventlog import REQUIRED, EventLog, Progress, ReportError, to_frame


def read_kafka(
    settings: Any,
    bootstrap: str | None = None,
    need_shadow: bool = False,
    progress: Progress | None = None,
    idle_timeout: float = 60.0,
) -> EventLog:
    """Read the decisions, outcomes (and shadow) topics from the beginning to the end offsets
    they had when the read started."""
    from app.contracts.codec import Codec
    from app.kafka.connection import confluent_config

    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    conf = confluent_config(settings)
    codec = Codec(settings)
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


def _read_topic(
    conf: dict[str, str],
    topic: str,
    decode: Callable[[bytes | None], dict[str, Any]],
    optional: bool,
    progress: Progress | None,
    idle_timeout: float,
) -> tuple[list[dict[str, Any]], int]:
    """(decoded records, undecodable count) of one topic up to its current end offsets."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    c = Consumer(
        {
            **conf,
            "group.id": f"authpilot-report-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    try:
        try:
            meta = c.list_topics(topic, timeout=15).topics.get(topic)
        except KafkaException as exc:
            raise ReportError(f"cannot reach Kafka at {conf['bootstrap.servers']}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            if optional:
                return [], 0
            raise ReportError(f"topic {topic} does not exist on {conf['bootstrap.servers']}")
        end: dict[int, int] = {}
        assign = []
        total = 0
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            if hi > lo:
                end[p] = hi
                assign.append(TopicPartition(topic, p, lo))
                total += hi - lo
        if not assign:
            return [], 0
        c.assign(assign)
        rows: list[dict[str, Any]] = []
        bad = seen = 0
        last_msg = last_note = time.monotonic()
        while end:
            msgs = c.consume(1000, timeout=1.0)
            now = time.monotonic()
            if not msgs and now - last_msg > idle_timeout:
                raise ReportError(
                    f"{topic}: nothing arrived for {idle_timeout:.0f} s with "
                    f"partitions {sorted(end)} short of their end offsets"
                )
            for m in msgs:
                p, offset, err = m.partition(), m.offset(), m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if p is not None:  # also ends a partition whose last offset is a marker
                            end.pop(p, None)
                        continue
                    raise ReportError(f"{topic}: {err}")
                if p is None or offset is None:  # librdkafka sets both on every fetched message
                    raise ReportError(f"{topic}: a message without partition or offset")
                last_msg = now
                if p not in end or offset >= end[p]:
                    continue  # arrived after the read started
                seen += 1
                try:
                    rows.append(decode(m.value()))  # a tombstone (None) is a DecodeError too
                except ValueError:  # codec.DecodeError: a dead letter, not our business here
                    bad += 1
                if offset >= end[p] - 1:
                    end.pop(p)
            if progress and (now - last_note > 2.0 or not end):
                last_note = now
                progress(f"{topic}: {seen:,}/{total:,} messages ({seen / total:.0%})")
        return rows, bad
    finally:
        c.close()
