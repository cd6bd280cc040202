"""Decisions already sent: the first one stays the answer, bounded per partition."""

from __future__ import annotations

from app.state.decided import OFFSET_HEADER, Decided, source_offset


def test_the_first_decision_stays_the_answer() -> None:
    d = Decided(cap=10)
    d.put(0, "r1", 5, b"first")
    d.put(0, "r1", 9, b"second")  # a redelivered request must not replace it
    assert d.get(0, "r1") == (5, b"first")
    assert d.get(1, "r1") is None  # partitions are separate


def test_oldest_decisions_leave_first() -> None:
    d = Decided(cap=3)
    n = d.load(2, [(f"r{i}", i, b"x") for i in range(5)])
    assert n == 5 and d.loaded(2)
    assert d.get(2, "r0") is None and d.get(2, "r1") is None and d.get(2, "r4") == (4, b"x")


def test_forgotten_partitions_must_be_read_back_again() -> None:
    d = Decided(cap=3)
    d.put(1, "r", 1, b"v")
    d.forget([1])
    assert not d.loaded(1) and d.get(1, "r") is None


def test_source_offset_header() -> None:
    assert source_offset([("x", b"1"), (OFFSET_HEADER, b"42")]) == 42
    assert source_offset([(OFFSET_HEADER, None)]) is None
    assert source_offset([(OFFSET_HEADER, b"nope")]) is None
    assert source_offset(None) is None
