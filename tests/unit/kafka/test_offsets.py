"""The offset guard's rules: no jump trusted, holes at the head found, records past a hole held."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP

from app.kafka.offsets import OffsetGuard, hole_at_head, trusted_gap

REQ = TP("req", 0)


def test_no_jump_is_trusted_without_transactional_input() -> None:
    assert not trusted_gap(11, 12, markers=False)  # offset 11 missing
    assert trusted_gap(11, 12, markers=True)  # one marker
    assert not trusted_gap(11, 14, markers=True)  # three offsets: records were skipped


def test_a_hole_at_the_committed_offset_is_found() -> None:
    assert hole_at_head(100, [100, 101]) is None
    assert hole_at_head(100, [101, 102]) == (100, 101)  # Faust commits past this one
    assert hole_at_head(100, [101], markers=True) is None  # a marker at 100
    assert hole_at_head(100, [180, 181], markers=True) == (100, 180)
    assert hole_at_head(None, [5]) is None and hole_at_head(3, []) is None


class _Guard(OffsetGuard):
    def __init__(self, committed: int | None) -> None:
        super().__init__(frozenset({"req"}), markers=False)
        self.app = SimpleNamespace(consumer=SimpleNamespace(_committed_offset={REQ: committed}))
        self.asked: list[tuple[TP, int]] = []

    def start_reread(self, tp: TP, offset: int) -> None:
        self.asked.append((tp, offset))


def test_admit_lets_through_the_next_offset_and_replays_only() -> None:
    g = _Guard(committed=10)
    assert g.admit(REQ, 10) and g.admit(REQ, 11)
    assert g.admit(REQ, 5)  # read again after a seek back: a replay, handled (and harmless)
    assert g.expected[REQ] == 6


def test_a_record_past_a_hole_is_held_and_the_partition_re_read_once() -> None:
    g = _Guard(committed=10)
    assert g.admit(REQ, 10)
    assert not g.admit(REQ, 90)  # the rest of a batch fetched before the rebalance's seek
    assert not g.admit(REQ, 91)
    assert g.asked == [(REQ, 11)] and g.gaps == 1  # one re-read for the whole hole
    assert g.admit(REQ, 11)  # the re-read's first record
    assert REQ not in g.pending


def test_other_topics_are_not_guarded() -> None:
    g = _Guard(committed=10)
    assert g.admit(TP("changelog", 0), 500)


@pytest.mark.parametrize("committed", [None])
def test_a_partition_never_committed_starts_anywhere(committed: int | None) -> None:
    g = _Guard(committed)
    assert g.admit(REQ, 42) and not g.admit(REQ, 50)
