"""The loader: a computed BackfillState written as the changelogs a new deployment recovers.

A worker restores its tables from their changelog topics when it gets its partitions, so the
loader writes exactly what the worker's checkpoints would have written (app.state.checkpoint
values with marks, one value per card, the owners' values and their GlobalTable copies) to
`<app id>-<table>-changelog`, each key on the partition its worker would own it on: card state
on the partition the gateways' partitioner gives the card (AUTHPILOT_GATEWAY_PARTITIONER), owned
state on its owner partition (app.state.deltas.owner_partition). Workers started afterwards
recover it as their own.

Nothing a downstream consumer acts on is written (no decision, RetryDecision or alert). The
marks decide what the workers do with outcomes already in the outcomes topic:
- `outcomes_from="end"` (default): the log includes them. Every value's marks are the topic's
  current end offsets, and the group's committed offsets on the outcomes topic are set there,
  so workers start learning at the first outcome after the load and never apply one twice.
- `outcomes_from="start"`: the log precedes the topic; marks are empty and the workers learn
  every retained outcome on top of the backfilled state.
It refuses a deployment that already has state (any changelog with messages) or live workers
(a consumer group with members): backfill warms a new deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from app.config import Settings
from app.features.definitions import ENTITIES
from app.kafka.partitioning import partition_of
from app.state.backfill.vectorized import BackfillState
from app.state.checkpoint import NO_MARK, card_group, encode, pack_group
from app.state.deltas import OWNER_TAGS, owner_partition
from app.state.windows.residual import published

OutcomesFrom = Literal["end", "start"]
# worker table -> the GlobalTable its owner publishes to (None: not published)
TABLES = {"card-features": None, "feature-state": "feature-snapshots", "route-stats": "route-sr"}

# The owner key of an owned entity key: route-owned entities start with the route; BIN- and
# merchant-owned entities are keyed by that one field.
_OWNER_OF = {e.name: e.owner for e in ENTITIES if e.owner != "card"}
for _e in ENTITIES:
    if _e.owner == "route":
        assert _e.fields[0] == "route_id", f"{_e.name}: route-owned keys must start with route"
    elif _e.owner != "card":
        assert _e.fields == (OWNER_TAGS[_e.owner][1],), f"{_e.name}: one field, its owner's"


class LoadError(RuntimeError):
    """The deployment cannot take a backfill (it has state, live workers, or no broker)."""


@dataclass(frozen=True)
class LoadReport:
    """What `load` wrote, per changelog topic."""

    records: dict[str, int]  # changelog topic -> records written
    target: str  # the broker and app id
    seconds: float
    marks: list[int]  # the marks every value carries (per outcomes partition)


def _group_members(admin: object, group: str, tries: int = 20) -> int:
    """Live members of a consumer group (0 for a group that never existed). The coordinator of
    a new broker or group answers NOT_COORDINATOR / loading for a moment: retried."""
    from confluent_kafka import KafkaError, KafkaException

    transient = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS}  # fmt: skip
    for i in range(tries):
        try:
            desc = admin.describe_consumer_groups([group])[group].result(15)  # type: ignore[attr-defined]
            return len(desc.members)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                return 0
            if code not in transient or i == tries - 1:
                raise LoadError(f"cannot describe consumer group {group!r}: {exc}") from exc
            time.sleep(0.5)
    return 0


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"  # Faust's naming


def owner_key(key: bytes) -> str:
    """The route / BIN / merchant a feature-state key is owned by."""
    name, _, rest = key.decode().partition("|")
    owner = _OWNER_OF.get(name)
    if owner is None:
        raise ValueError(f"not an owned feature key: {key!r}")
    return rest.split("|", 1)[0] if owner == "route" else rest


def records(
    state: BackfillState, s: Settings, marks: list[int]
) -> Iterator[tuple[str, int, bytes, bytes]]:
    """(table, partition, key, value) for every record a worker would have checkpointed."""
    n = s.partitions
    place = partition_of(s.gateway_partitioner)
    groups: dict[bytes, dict[bytes, bytes]] = {}
    for k, v in state.card.items():
        groups.setdefault(card_group(k), {})[k] = v
    for g, entries in groups.items():
        card = g.removeprefix(b"card:")
        yield "card-features", place(card, n), g, encode(marks, pack_group(entries))
    for k, v in state.features.items():
        p = owner_partition(owner_key(k), n)
        yield "feature-state", p, k, encode(marks, v)
        yield "feature-snapshots", p, k, v
    for k, v in state.route_stats.items():
        p = owner_partition(k.decode().split("|", 1)[0], n)
        yield "route-stats", p, k, encode(marks, v)
        yield "route-sr", p, k, published(k, v)


def load(
    state: BackfillState,
    settings: Settings,
    outcomes_from: OutcomesFrom = "end",
    progress: Callable[[str], None] | None = None,
    connect_timeout_s: float = 15.0,
) -> LoadReport:
    """Write `state` where the workers of `settings` recover it from (see the module doc).
    No broker answering within `connect_timeout_s` is a LoadError before anything is written."""
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from app.kafka.connection import confluent_config

    say = progress or (lambda _: None)
    s = settings
    t0 = time.perf_counter()
    conf: dict[str, str | int | float | bool] = dict(confluent_config(s))
    admin = AdminClient(conf)
    try:
        meta = admin.list_topics(timeout=connect_timeout_s)
    except KafkaException as exc:
        raise LoadError(f"no broker at {conf['bootstrap.servers']}: {exc}") from exc
    tables = [*TABLES, *(g for g in TABLES.values() if g is not None)]
    names = {t: changelog_topic(s.app_id, t) for t in tables}
    members = _group_members(admin, s.app_id)
    if members:
        raise LoadError(f"consumer group {s.app_id!r} has {members} live member(s): "
                        "stop the workers first")  # fmt: skip
    c = Consumer({**conf, "group.id": s.app_id, "enable.auto.commit": False})
    try:
        for name in names.values():
            t = meta.topics.get(name)
            if t is None:
                continue
            if len(t.partitions) != s.partitions:
                raise LoadError(f"{name} has {len(t.partitions)} partitions, "
                                f"AUTHPILOT_PARTITIONS is {s.partitions}")  # fmt: skip
            held = sum(c.get_watermark_offsets(TopicPartition(name, p), timeout=15)[1]
                       for p in t.partitions)  # fmt: skip
            if held:
                raise LoadError(f"{name} already holds {held:,} records: this deployment "
                                "has state; backfill warms a new one (a new app id)")  # fmt: skip
        missing = [NewTopic(name, s.partitions, s.replication_factor,
                            config={"cleanup.policy": "compact"})
                   for name in names.values() if name not in meta.topics]  # fmt: skip
        if missing:
            for f in admin.create_topics(missing).values():
                f.result(30)
        src = meta.topics.get(s.topic_outcomes)
        ends = [NO_MARK] * s.partitions
        if outcomes_from == "end" and src is not None:
            for p in src.partitions:
                if p < s.partitions:
                    ends[p] = c.get_watermark_offsets(TopicPartition(s.topic_outcomes, p),
                                                      timeout=15)[1] - 1  # fmt: skip
        marks = ends if outcomes_from == "end" else [NO_MARK] * s.partitions
        say(f"marks (last outcome offset applied, per partition): {marks}")
        # No compression: the workers' aiokafka reads lz4/snappy/zstd only with extra libraries
        # (measured: a worker crashed on an lz4 changelog), and gzip would cost more CPU than
        # the load itself.
        prod = Producer({**conf, "linger.ms": 50, "compression.type": "none",
                         "enable.idempotence": True,
                         "queue.buffering.max.messages": 500_000})  # fmt: skip
        counts = dict.fromkeys(names.values(), 0)
        for total, (table, p, k, v) in enumerate(records(state, s, marks), 1):
            topic = names[table]
            while True:
                try:
                    prod.produce(topic, key=k, value=v, partition=p)
                    break
                except BufferError:
                    prod.poll(0.05)
            counts[topic] += 1
            if total % 50_000 == 0:
                prod.poll(0)
                say(f"{total:,} records handed to the producer")
        if prod.flush(120) != 0:
            raise LoadError("records still unsent after 120 s: the load is incomplete")
        if outcomes_from == "end" and src is not None:
            offs = [TopicPartition(s.topic_outcomes, p, ends[p] + 1)
                    for p in range(s.partitions) if ends[p] >= 0]  # fmt: skip
            if offs:
                c.commit(offsets=offs, asynchronous=False)
                say(f"group {s.app_id} starts the outcomes topic at {[o.offset for o in offs]}")
    finally:
        c.close()
    return LoadReport(counts, f"{conf['bootstrap.servers']} app {s.app_id}",
                      time.perf_counter() - t0, marks)  # fmt: skip
