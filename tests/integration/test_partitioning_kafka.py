"""Backfill's partition functions agree with real producers on a real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from app.kafka.partitioning import partition_of

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("partitioner", ["consistent_random", "murmur2_random"])
def test_partition_of_matches_the_producer(kafka_bootstrap, partitioner):
    topic = f"part-{uuid.uuid4().hex[:8]}"
    n = 7
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for f in admin.create_topics([NewTopic(topic, n, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": partitioner})
    keys = [f"card-{i:05d}".encode() for i in range(300)] + [b"x", b"ab", b"abc", b"\xff" * 5]
    got: dict[bytes, int] = {}

    def report(err, msg):
        assert err is None
        got[msg.key()] = msg.partition()

    for k in keys:
        p.produce(topic, key=k, value=b"v", on_delivery=report)
    assert p.flush(30) == 0
    place = partition_of(partitioner)
    assert {k: place(k, n) for k in keys} == got
    assert len(set(got.values())) == n  # the keys really spread: the check is not vacuous
