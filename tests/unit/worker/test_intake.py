"""The intake's Admission: the byte bound before decoding, key and event time after, one clock
per partition (the Kafka side: tests/integration/test_bounds_kafka.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.config import Settings
from app.contracts.validate import ValidationError
from app.worker.agents.intake import Admission

T0 = 1_700_000_000_000
DAY = 86_400_000


def _msg(partition=0, key=b"card-1", value=b"v", headers=None):
    return SimpleNamespace(topic="t", partition=partition, offset=0, key=key, value=value,
                           headers=headers, timestamp=None)  # fmt: skip


def _rec(t, card="card-1"):
    return {"card_fingerprint": card, "event_time": t}


def test_oversized_counts_key_value_and_headers():
    a = Admission(Settings(max_input_bytes=1024))
    assert a.oversized(_msg(value=b"x" * 1000)) is None
    detail = a.oversized(_msg(value=b"x" * 1000, headers=[("h", b"y" * 100)]))
    assert detail is not None and "headers 101" in detail and "1024" in detail


def test_key_then_event_time():
    a = Admission(Settings(), now=lambda: T0)
    a(_msg(), _rec(T0))
    with pytest.raises(ValidationError) as err:
        a(_msg(key=None), _rec(T0))
    assert err.value.field == "key"
    with pytest.raises(ValidationError) as err:
        a(_msg(), _rec(T0 + DAY))
    assert err.value.field == "event_time"


def test_stream_clocks_are_per_partition():
    """A partition catching up days behind another is not refused as old."""
    a = Admission(Settings(event_time_clock="stream"), now=lambda: T0)
    a(_msg(partition=0), _rec(T0))
    for d in range(1, 9):  # partition 0 runs 8 days ahead, 5 minutes at a time
        for i in range(288):
            a(_msg(partition=0), _rec(T0 + (d - 1) * DAY + i * 300_000))
    a(_msg(partition=1), _rec(T0))  # partition 1 starts where partition 0 did
    with pytest.raises(ValidationError):
        a(_msg(partition=0), _rec(T0))  # 8 days behind partition 0's clock


def test_the_outcome_agent_picks_the_record_from_its_decoded_pair():
    a = Admission(Settings(), record=lambda d: d[0], now=lambda: T0)
    a(_msg(), (_rec(T0), b"raw"))
    with pytest.raises(ValidationError):
        a(_msg(key=b"card-2"), (_rec(T0), b"raw"))
