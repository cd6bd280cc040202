"""The per-card window of recent outcome ids."""

from __future__ import annotations

from app.state.dedupe import add, contains, id_hash, seen_key

H = 3_600_000


def test_ids_are_found_until_they_leave_the_window_or_the_cap():
    v = None
    for i in range(5):
        v = add(v, id_hash(f"r{i}"), i * H, window_ms=3 * H, cap=10)
    assert all(contains(v, id_hash(f"r{i}")) for i in (2, 3, 4))
    assert not contains(v, id_hash("r0")) and not contains(v, id_hash("r1"))  # aged out
    assert not contains(v, id_hash("other")) and not contains(None, id_hash("r4"))
    capped = None
    for i in range(20):
        capped = add(capped, id_hash(f"c{i}"), i, window_ms=10 * H, cap=4)
    assert len(capped) == 4 * 16
    assert [contains(capped, id_hash(f"c{i}")) for i in (15, 16, 19)] == [False, True, True]


def test_an_old_outcome_arriving_late_does_not_evict_newer_ids():
    v = add(None, id_hash("new"), 10 * H, window_ms=2 * H, cap=8)
    v = add(v, id_hash("late"), 1 * H, window_ms=2 * H, cap=8)  # older than the window
    assert contains(v, id_hash("new")) and not contains(v, id_hash("late"))


def test_the_window_lives_in_the_cards_group():
    from app.state.checkpoint import card_group

    assert card_group(seen_key("c1")) == card_group(b"card|c1")
