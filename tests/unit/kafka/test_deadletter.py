"""Dead-letter records: headers as sent, bounded sizes with the originals recorded, and a sink
that never raises (the Kafka side is tests/integration/test_bounds_kafka.py)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from app.config import REPO_ROOT, Settings
from app.contracts.codec import Codec, LocalRegistry, load_schema_file
from app.kafka.deadletter import (
    HEADER_VALUE_KEEP,
    HEADERS_KEEP,
    KEY_KEEP,
    VALUE_KEEP,
    DeadLetterSink,
    dead_letter_record,
    kept_headers,
    minimal_record,
)
from app.monitoring.metrics import DEAD_LETTERS

SERDE = Codec(Settings()).dead_letter


def _rec(key=b"card-1", value=b"\x00abc", headers=None, detail="bad"):
    return dead_letter_record("t.requests", 1, 42, key, value, headers, "invalid_field", detail,
                              1, "w")  # fmt: skip


def test_headers_are_kept_as_sent_duplicates_and_nulls_included():
    headers = [("trace", b"1"), ("trace", b"2"), ("empty", None), ("authpilot.reason", b"ok")]
    rec = _rec(headers=headers)
    assert rec["header_list"] == [
        {"key": "trace", "value": b"1"},
        {"key": "trace", "value": b"2"},
        {"key": "empty", "value": None},  # null stays null, not b"None"
        {"key": "authpilot.reason", "value": b"ok"},  # a forged header is data, kept here
    ]
    assert rec["header_count"] == 4 and rec["headers_size"] == 5 + 1 + 5 + 1 + 5 + 16 + 2
    assert rec["headers"] == {} and not rec["truncated"]
    back = SERDE.decode(SERDE.encode(rec))
    assert back["header_list"] == rec["header_list"]


def test_a_whole_message_is_kept_untouched_with_its_sizes():
    rec = _rec(value=b"v" * 5000)
    assert rec["value"] == b"v" * 5000 and rec["value_size"] == 5000
    assert rec["key"] == b"card-1" and rec["key_size"] == 6 and not rec["truncated"]
    none = _rec(key=None, value=None)
    assert none["key_size"] is None and none["value_size"] is None


def test_everything_is_cut_to_fit_with_the_original_sizes_recorded():
    big = b"x" * 5_000_000
    headers = [("h" * 10_000, big), *[(f"k{i}", b"y" * 5000) for i in range(100)]]
    rec = _rec(key=big, value=big, headers=headers, detail="d" * 100_000)
    assert rec["truncated"]
    assert rec["key"] == big[:KEY_KEEP] and rec["key_size"] == len(big)
    assert rec["value"] == big[:VALUE_KEEP] and rec["value_size"] == len(big)
    assert rec["header_count"] == 101
    assert rec["headers_size"] == 10_000 + len(big) + sum(len(f"k{i}") + 5000 for i in range(100))
    first = rec["header_list"][0]
    assert len(first["key"]) == 256 and first["value"] == big[:HEADER_VALUE_KEEP]
    kept = sum(len(h["key"].encode()) + len(h["value"]) for h in rec["header_list"])
    assert kept <= HEADERS_KEEP and len(rec["header_list"]) < 101
    encoded = SERDE.encode(rec)
    assert len(encoded) < 400_000, "far under the producer's 1 MB limit"


def test_the_worst_case_dead_letter_fits_the_producer_limit():
    """4-byte characters in every header key and the detail: still under 1,000,000 bytes
    (faust's producer_max_request_size) with room for the record batch overhead."""
    wide = "\U0001f4b3"
    headers = [(wide * 300, b"z" * 9000) for _ in range(1000)]
    rec = _rec(key=b"k" * 10**6, value=b"v" * 10**6, headers=headers, detail=wide * 10_000)
    assert len(SERDE.encode(rec)) < 400_000


def test_the_minimal_record_keeps_coordinates_and_sizes_only():
    rec = _rec(key=b"k" * 10, value=b"v" * 100, headers=[("a", b"b")])
    m = minimal_record(rec, "MessageSizeTooLargeError: too big")
    assert m["key"] is None and m["value"] is None and m["header_list"] == []
    assert m["truncated"] and m["value_size"] == 100 and m["source_offset"] == 42
    assert "MessageSizeTooLargeError" in m["detail"]
    SERDE.encode(m)


def test_kept_headers_accepts_a_mapping_and_non_bytes_values():
    out, n, size, cut = kept_headers({"a": "text", "b": bytearray(b"xy")})
    assert out == [{"key": "a", "value": b"text"}, {"key": "b", "value": b"xy"}]
    assert (n, size, cut) == (2, 1 + 4 + 1 + 2, False)


class _Topic:
    """A stand-in for the Faust topic: fails the first `fail` sends, records the rest."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.sent: list[dict] = []

    def get_topic_name(self) -> str:
        return "t.dead-letter"

    async def send(self, *, key, value, headers):
        if self.fail:
            self.fail -= 1
            raise ValueError("MessageSizeTooLargeError: the message is 2000000 bytes")
        self.sent.append({"key": key, "value": value, "headers": headers})


def _message():
    forged = [("authpilot.reason", b"forged")]
    return SimpleNamespace(topic="t.requests", partition=0, offset=7, key=b"card-1",
                           value=b"\x00" * 100, headers=forged)  # fmt: skip


@pytest.mark.parametrize("fail", [0, 1, 2])
def test_the_sink_never_raises_and_sets_only_its_own_headers(fail):
    topic = _Topic(fail)
    sink = DeadLetterSink(topic, SERDE, "w")
    before = DEAD_LETTERS.labels("invalid_field")._value.get()
    asyncio.run(sink.send(_message(), "invalid_field", "event_time: far ahead"))
    after = DEAD_LETTERS.labels("invalid_field")._value.get()
    if fail == 2:  # both the full and the minimal record failed: logged, not raised
        assert topic.sent == [] and after == before
        return
    assert after == before + 1
    (sent,) = topic.sent
    assert sent["headers"] == [("authpilot.reason", b"invalid_field"),
                               ("authpilot.source", b"t.requests/0/7")]  # fmt: skip
    rec = SERDE.decode(sent["value"])
    assert rec["header_list"] == ([] if fail else [{"key": "authpilot.reason", "value": b"forged"}])
    assert rec["value"] == (None if fail else b"\x00" * 100) and rec["value_size"] == 100
    assert rec["truncated"] == bool(fail)


def test_dead_letter_v2_is_registered_and_compatible_with_v1():
    """v2 (id 7) is written; v1 records (id 4) still decode, and v1 readers read v2 records."""
    reg = json.loads((REPO_ROOT / "schemas" / "registry.json").read_text())
    assert reg["subjects"]["DeadLetter"] == [{"id": 4, "file": "DeadLetter.v1.avsc"},
                                             {"id": 7, "file": "DeadLetter.avsc"}]  # fmt: skip
    assert SERDE.schema_id == 7
    import io

    import fastavro

    v1 = load_schema_file(REPO_ROOT / "schemas" / "DeadLetter.v1.avsc")
    old = {"source_topic": "t", "source_partition": 0, "source_offset": 1, "key": b"k",
           "value": b"v", "headers": {"a": b"1"}, "reason": "undecodable", "detail": "d",
           "failed_at": 1, "worker": "w"}  # fmt: skip
    buf = io.BytesIO()
    buf.write(b"\x00\x00\x00\x00\x04")
    fastavro.schemaless_writer(buf, v1, old)
    got = SERDE.decode(buf.getvalue())  # v1 bytes, read with v2
    assert got["headers"] == {"a": b"1"} and got["header_list"] == [] and not got["truncated"]
    new = SERDE.encode(_rec(headers=[("a", None)]))
    back = fastavro.schemaless_reader(io.BytesIO(new[5:]), SERDE.schema, v1)  # v2 bytes, v1 reader
    assert back["reason"] == "invalid_field" and back["headers"] == {}
    assert LocalRegistry(REPO_ROOT / "schemas").schema_for(4)["name"] == "io.authpilot.DeadLetter"
