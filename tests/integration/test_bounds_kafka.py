"""Input bounds on the real broker: every malformed request and outcome is dead-lettered with
the right reason (1 MB fields, non-ASCII digits, far-future and negative event times, keys that
are not the card, bloated headers), dead letters keep headers as sent (duplicates, nulls) and
carry only the worker's own headers, and the stream goes on. Compressed input (gzip, snappy,
lz4, zstd) is decided."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from app.config import Settings
from app.contracts.codec import Codec
from app.harness.sample import SampleTraffic
from app.kafka.connection import confluent_config
from tests.conftest import WorkerProcess, wait_until
from tests.kafka_io import read_topic

pytestmark = pytest.mark.kafka

MB = 1_000_000


def _produce(s: Settings, topic: str, items: list[tuple], **conf) -> None:
    """(key, value, headers) triples, in order, on one producer."""
    p = Producer({**confluent_config(s), "linger.ms": 5, **conf})
    for key, value, headers in items:
        p.produce(topic, key=key, value=value, headers=headers)
    assert p.flush(30) == 0


@pytest.fixture
def wall_worker(worker_env: dict[str, str], settings_for: Settings, tmp_path: Path):
    """A worker with the production clock and bounds: the defaults, wall clock."""
    from app.kafka.topics import ensure_topics

    ensure_topics(settings_for)
    env = {k: v for k, v in worker_env.items() if not k.startswith("AUTHPILOT_EVENT_TIME_")}
    w = WorkerProcess(env, tmp_path / "worker.log").start()
    yield w
    if w.running:
        w.stop()


def test_malformed_input_is_dead_lettered_with_the_right_reason(wall_worker, settings_for):
    s = settings_for
    codec = Codec(s)
    enc_r, enc_o = codec.request.encode, codec.outcome.encode
    world = SampleTraffic(41)
    now = int(time.time() * 1000)
    good = [world.next_request(now + i) for i in range(30)]
    base = good[0]
    card = base["card_fingerprint"].encode()

    def req(name: str, **changes) -> bytes:
        return enc_r({**base, "request_id": f"bad-{name}", **changes})

    declined = world.outcome(base, "acq-eu", now + 100)
    declined.update(approved=False, response_code="51", failure_side="ISSUER", initiator="MIT",
                    three_ds=False, request_id="good-decline")  # fmt: skip

    def out(name: str, **changes) -> bytes:
        return enc_o({**declined, "request_id": f"bad-{name}", **changes})

    # (topic, pill name, key, value, extra headers, reason, field named in the detail)
    R, O = s.topic_requests, s.topic_outcomes  # noqa: E741
    pills = [
        (R, "mb-field", card, req("mb", payment_id="p" * MB), [], "oversized", "AUTHPILOT_MAX"),
        (R, "long-id", card, req("long", request_id="r" * 129), [], "invalid_field", "request_id"),
        (R, "arabic-bin", card, req("ar", bin="\u0664\u0661\u0661\u0661\u0661\u0661"), [],
         "invalid_field", "bin"),
        (R, "fullwidth-mcc", card, req("fw", mcc="\uff15\uff19\uff19\uff19"), [],
         "invalid_field", "mcc"),
        (R, "future", card, req("future", event_time=now + 86_400_000), [], "invalid_field",
         "event_time"),
        (R, "negative", card, req("neg", event_time=-1), [], "invalid_field", "event_time"),
        (R, "null-key", None, req("nokey"), [], "invalid_field", "key"),
        (R, "wrong-key", b"another-card", req("wrongkey"), [], "invalid_field", "key"),
        (R, "fat-headers", card, req("fat"), [("x", b"h" * 100_000)], "oversized", "headers"),
        (R, "forged", card, b"not avro", [("authpilot.reason", b"ok"),
                                          ("authpilot.source", b"elsewhere/0/0")],
         "undecodable", "magic"),
        (R, "nulls-and-dups", card, b"\x00\x00\x00\x00", [("dup", b"1"), ("dup", b"2"),
                                                           ("null", None), ("dup", None)],
         "undecodable", "header"),
        (O, "mb-outcome", card, out("mb", response_code="0" * MB), [], "oversized",
         "AUTHPILOT_MAX"),
        (O, "2^62", card, out("2p62", event_time=2**62), [], "invalid_field", "event_time"),
        (O, "100-years", card, out("century", event_time=now + 100 * 365 * 86_400_000), [],
         "invalid_field", "event_time"),
        (O, "old", card, out("old", event_time=now - 8 * 86_400_000), [], "invalid_field",
         "event_time"),
        (O, "outcome-key", b"another-card", out("okey"), [], "invalid_field", "key"),
        (O, "outcome-bin", card, out("obin", bin="\uff14" * 6), [], "invalid_field", "bin"),
    ]  # fmt: skip
    for topic in (R, O):
        items = []
        mine = [p for p in pills if p[0] == topic]
        for i, (_, name, key, value, extra, _, _) in enumerate(mine):
            items.append((key, value, [("pill", name.encode()), *extra]))
            if topic == R:  # a valid request after every pill
                dups = [("dup", b"a"), ("dup", None)]
                items.append((good[i]["card_fingerprint"], enc_r(good[i]), dups))
        if topic == R:
            items += [(r["card_fingerprint"], enc_r(r), None) for r in good[len(mine) :]]
        else:
            items.append((card, enc_o(declined), None))
        _produce(s, topic, items, **{"message.max.bytes": 1_048_576})  # the 1 MB fields

    dead = read_topic(s, s.topic_dead_letter, expect=len(pills), timeout=90)
    assert len(dead) == len(pills), wall_worker.log_tail()
    by_pill = {}
    for m in dead:
        # the dead letter's own Kafka headers are exactly the worker's two, never the forged
        assert [k for k, _ in m.headers()] == ["authpilot.reason", "authpilot.source"]
        rec = codec.dead_letter.decode(m.value())
        assert dict(m.headers())["authpilot.reason"] == rec["reason"].encode()
        assert dict(m.headers())["authpilot.source"] == (
            f"{rec['source_topic']}/{rec['source_partition']}/{rec['source_offset']}".encode()
        )
        by_pill[rec["header_list"][0]["value"].decode()] = rec
    for topic, name, key, value, extra, reason, field in pills:
        rec = by_pill[name]
        assert rec["reason"] == reason, (name, rec["detail"])
        assert field in rec["detail"], (name, rec["detail"])
        assert rec["source_topic"] == topic
        assert rec["value_size"] == len(value)
        assert rec["key_size"] == (None if key is None else len(key))
        sent = [("pill", name.encode()), *extra]
        assert rec["header_count"] == len(sent)
        assert rec["headers_size"] == sum(len(k) + len(v or b"") for k, v in sent)
        if name == "fat-headers":  # the 100 KB header value is cut, its size recorded
            assert rec["header_list"][1] == {"key": "x", "value": b"h" * 8192}
            assert rec["value"] == value and rec["truncated"]
            continue
        if len(value) <= 262_144:
            assert rec["value"] == value and not rec["truncated"], name
        else:  # cut to fit, the original size kept
            assert rec["value"] == value[:262_144] and rec["truncated"]
        assert rec["header_list"] == [{"key": k, "value": v} for k, v in sent]
    forged = by_pill["forged"]
    assert forged["reason"] == "undecodable"  # the incoming authpilot.reason: ok is data
    assert by_pill["nulls-and-dups"]["header_list"][1:] == [
        {"key": "dup", "value": b"1"}, {"key": "dup", "value": b"2"},
        {"key": "null", "value": None}, {"key": "dup", "value": None},
    ]  # fmt: skip

    decided = [codec.decision.decode(m.value())
               for m in read_topic(s, s.topic_decisions, expect=len(good))]  # fmt: skip
    assert Counter(d["request_id"] for d in decided) == Counter(r["request_id"] for r in good)
    # the valid decline got its RetryDecision; the outcomes dead-lettered got none
    retries = [codec.retry.decode(m.value())
               for m in read_topic(s, s.topic_retry_decisions, expect=1)]  # fmt: skip
    assert [r["request_id"] for r in retries] == ["good-decline"]
    want = Counter(p[5] for p in pills)
    assert wait_until(lambda: all(
        wall_worker.metric(f'authpilot_dead_letters_total{{reason="{r}"}}') == n
        for r, n in want.items()), 30), wall_worker.metrics()  # fmt: skip
    assert wall_worker.running, "no agent crash took the worker down"


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_requests_are_decided(worker, settings_for, compression):
    """A gateway producing compressed batches: aiokafka decompresses them (cramjam for snappy,
    lz4, zstd); without the codec the worker's fetcher stops."""
    s = settings_for
    codec = Codec(s)
    world = SampleTraffic(43)
    reqs = [world.next_request(1_767_225_600_000 + i) for i in range(200)]
    # one batch of similar records compresses well: check the producer really compressed
    _produce(s, s.topic_requests, [(r["card_fingerprint"], codec.request.encode(r), None)
                                   for r in reqs], **{"compression.type": compression,
                                                      "linger.ms": 50})  # fmt: skip
    decided = [codec.decision.decode(m.value())
               for m in read_topic(s, s.topic_decisions, expect=len(reqs))]  # fmt: skip
    assert Counter(d["request_id"] for d in decided) == Counter(r["request_id"] for r in reqs)
    assert worker.metric("authpilot_dead_letters_total") == 0
