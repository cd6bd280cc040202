"""Reading the event log from Kafka: stop at the end offsets the read started with."""

from __future__ import annotations

import json

from app.experiments import kafka_log


def test_kafka_reader_stops_at_the_end_offsets_of_the_start(monkeypatch):
    """A fake consumer: partition 0 holds offsets 0-2 then an EOF, partition 1 offsets 5-6 and
    a message written after the read started (offset 7, beyond the high watermark 7); one
    message is undecodable. No broker is needed (the broker-level path is integration)."""
    import confluent_kafka

    class Err:
        def __init__(self, code):
            self._code = code

        def code(self):
            return self._code

    class Msg:
        def __init__(self, p, off, value=None, err=None):
            self.p, self.off, self.v, self.err = p, off, value, err

        def partition(self):
            return self.p

        def offset(self):
            return self.off

        def value(self):
            return self.v

        def error(self):
            return self.err

    eof = Err(confluent_kafka.KafkaError._PARTITION_EOF)
    batches = [
        [Msg(0, 0, b'{"n": 0}'), Msg(1, 5, b'{"n": 5}'), Msg(0, 1, b"garbage")],
        [Msg(0, 2, b'{"n": 2}'), Msg(0, 3, err=eof), Msg(1, 6, b'{"n": 6}')],
        [Msg(1, 7, b'{"n": 7}')],
    ]

    class FakeConsumer:
        def __init__(self, conf):
            assert conf["enable.auto.commit"] is False

        def list_topics(self, topic, timeout):
            meta = type("T", (), {"error": None, "partitions": {0: None, 1: None}})
            return type("M", (), {"topics": {topic: meta}})

        def get_watermark_offsets(self, tp, timeout):
            return {0: (0, 4), 1: (5, 7)}[tp.partition]

        def assign(self, tps):
            assert [(t.partition, t.offset) for t in tps] == [(0, 0), (1, 5)]

        def consume(self, n, timeout):
            return batches.pop(0) if batches else []

        def close(self):
            pass

    def decode(b: bytes) -> dict:
        return json.loads(b)  # JSONDecodeError is a ValueError, as codec.DecodeError is

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    notes: list[str] = []
    rows, bad = kafka_log._read_topic({"bootstrap.servers": "x:1"}, "t", decode, False,
                                      notes.append, 5.0)  # fmt: skip
    assert sorted(r["n"] for r in rows) == [0, 2, 5, 6] and bad == 1
    assert notes[-1].startswith("t: 5/6 messages")
    assert len(batches) == 1  # stopped without waiting for the late message
