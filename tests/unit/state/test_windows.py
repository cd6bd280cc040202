from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from app.state.windows.count import (
    APPROVED,
    ROUTE_FAILURE,
    pack_snapshot,
    ring_snapshot,
    ring_update,
    unpack_snapshot,
)


@given(st.lists(st.integers(0, 2), max_size=400), st.integers(1, 50))
def test_ring_matches_a_naive_sliding_window(codes, window):
    value, ref = None, deque(maxlen=window)
    for i, c in enumerate(codes, 1):
        value, updates = ring_update(value, c, window)
        ref.append(c)
        assert updates == i
        snap = ring_snapshot(value)
        assert snap.samples == len(ref)
        assert snap.successes == sum(x == APPROVED for x in ref)
        assert snap.route_failures == sum(x == ROUTE_FAILURE for x in ref)


@given(st.lists(st.integers(0, 2), min_size=1, max_size=200), st.integers(1, 40),
       st.integers(1, 40))  # fmt: skip
def test_resizing_the_window_keeps_the_newest_outcomes(codes, w1, w2):
    value = None
    for c in codes:
        value, _ = ring_update(value, c, w1)
    value, _ = ring_update(value, APPROVED, w2)
    kept = ([*codes[-w1:], APPROVED])[-w2:]
    snap = ring_snapshot(value)
    assert snap.samples == len(kept)
    assert snap.successes == sum(x == APPROVED for x in kept)


def test_snapshot_and_update_roundtrip():
    snap = ring_snapshot(ring_update(None, APPROVED, 10)[0])
    assert unpack_snapshot(pack_snapshot(snap)) == snap
    assert unpack_snapshot(None) is None
