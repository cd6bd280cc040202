"""The offset guard's rules: no jump trusted, holes at the head found, records past a hole held."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from app.kafka.offsets import OffsetGuard, commit_offset

REQ = TP("req", 0)


def test_only_finished_records_are_committed() -> None:
    assert commit_offset(committed=10, handled=15) == 15
    assert commit_offset(committed=10, handled=10) is None  # nothing new finished
    assert commit_offset(committed=10, handled=6) is None  # replays below the commit
    assert commit_offset(committed=None, handled=3) == 3
    assert commit_offset(committed=10, handled=None) is None  # nothing finished yet


def test_transaction_markers_may_be_skipped_only_when_declared() -> None:
    g = _Guard(committed=10)
    assert not g.admit(REQ, 11)  # offset 10 missing: held
    m = _Guard(committed=10, markers=True)
    assert m.admit(REQ, 11) and not m.admit(REQ, 14)


class _Guard(OffsetGuard):
    def __init__(self, committed: int | None, markers: bool = False) -> None:
        super().__init__(frozenset({"req"}), markers=markers)
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


def test_done_marks_the_commit_point_and_a_new_assignment_forgets_it() -> None:
    g = _Guard(committed=10)
    assert g.admit(REQ, 10)
    g.done(REQ, 10)
    assert g.handled[REQ] == 11
    g.reset()
    assert REQ not in g.handled and REQ not in g.expected


def test_other_topics_are_not_guarded() -> None:
    g = _Guard(committed=10)
    assert g.admit(TP("changelog", 0), 500)


def test_a_partition_never_committed_starts_anywhere() -> None:
    g = _Guard(committed=None)
    assert g.admit(REQ, 42) and not g.admit(REQ, 50)
