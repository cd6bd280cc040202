import hashlib
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.state.windows import reference
from app.state.windows.base import Ring
from app.state.windows.count import (
    APPROVED,
    ROUTE_FAILURE,
    CountRing,
    pack_snapshot,
    snapshot_bytes,
    unpack_snapshot,
    update_count,
    update_success_rate,
)
from app.state.windows.time import Increment, TimeRing, geometry

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# country_route's windows (24h, 7d, 30d) over the 8 feature metrics
FEATURE_WINDOWS = ((HOUR_MS, 24), (DAY_MS, 7), (DAY_MS, 30))


@given(st.lists(st.integers(0, 2), max_size=400), st.integers(1, 50))
def test_ring_matches_a_naive_sliding_window(codes, window):
    ring = CountRing(window)
    value, ref = None, deque(maxlen=window)
    for i, c in enumerate(codes, 1):
        value = ring.update_one(value, c)
        ref.append(c)
        assert update_count(value) == i
        snap = ring.read_one(value)
        assert snap.samples == len(ref)
        assert snap.successes == sum(x == APPROVED for x in ref)
        assert snap.route_failures == sum(x == ROUTE_FAILURE for x in ref)


@given(st.lists(st.integers(0, 2), min_size=1, max_size=200), st.integers(1, 40),
       st.integers(1, 40))  # fmt: skip
def test_resizing_the_window_keeps_the_newest_outcomes(codes, w1, w2):
    value = None
    for c in codes:
        value = CountRing(w1).update_one(value, c)
    value = CountRing(w2).update_one(value, APPROVED)
    kept = ([*codes[-w1:], APPROVED])[-w2:]
    snap = CountRing(w2).read_one(value)
    assert snap.samples == len(kept)
    assert snap.successes == sum(x == APPROVED for x in kept)


def test_snapshot_and_update_roundtrip():
    value = CountRing(10).update_one(None, APPROVED)
    snap = CountRing(10).read_one(value)
    assert unpack_snapshot(pack_snapshot(snap)) == snap
    assert unpack_snapshot(snapshot_bytes(value)) == snap
    assert unpack_snapshot(None) is None


def test_a_count_ring_is_young_up_to_min_samples():
    ring = CountRing(125, min_samples=3)
    value = None
    young = []
    for _ in range(5):
        value = ring.update_one(value, APPROVED)
        young.append(ring.young(value))
    assert young == [True, True, True, False, False]


def test_update_success_rate_updates_the_three_levels():
    ring = CountRing(125)
    store: dict[bytes, bytes] = {}
    out = {"route_id": "r1", "bin": "411111", "network": "VISA", "issuer_country": "DE",
           "approved": False, "failure_side": "ROUTE"}  # fmt: skip
    update_success_rate(store, out, ring)
    update_success_rate(store, {**out, "bin": "522222", "approved": True}, ring)
    snaps = {k.decode(): ring.read_one(v) for k, v in store.items()}
    assert snaps == {
        "r1|bin:411111": (0, 1, 1),
        "r1|bin:522222": (1, 1, 0),
        "r1|cc:VISA:DE": (1, 2, 1),
        "r1|all": (1, 2, 1),
    }


@given(st.lists(st.tuples(st.integers(0, 40 * DAY_MS), st.integers(0, 5)), max_size=120),
       st.integers(0, 40 * DAY_MS))  # fmt: skip
def test_time_ring_matches_a_naive_bucket_window(events, later):
    """Read at or after the newest event, each window counts the outcomes whose bucket lies in
    the `buckets` buckets ending at floor(at / width)."""
    ring = TimeRing(geometry(FEATURE_WINDOWS, 2))
    events = sorted(events)  # in time order, as the stream delivers them per key
    at = (events[-1][0] if events else 0) + later
    value = None
    for t, x in events:
        value = ring.update_one(value, Increment(T0 + t, np.array([1, x], dtype=np.int64)))
    got = ring.read_one(value, T0 + at)
    for i, (width, buckets) in enumerate(FEATURE_WINDOWS):
        b = (T0 + at) // width
        live = [(1, x) for t, x in events if b - buckets < (T0 + t) // width <= b]
        want = np.array(live, dtype=np.int64).reshape(-1, 2).sum(axis=0)
        assert got[i].tolist() == want.tolist()


def test_old_values_read_the_same():
    """The byte layouts are the tables' on-disk format: these digests are of values written by
    the previous implementation of the same codecs."""
    rng = random.Random(7)
    count = CountRing(125)
    v = None
    for _ in range(300):
        v = count.update_one(v, rng.randrange(3))
    assert (hashlib.sha256(v).hexdigest()[:16], len(v)) == ("84abbf7a6373e3d2", 137)
    v2 = CountRing(40).update_one(v, 1)
    assert hashlib.sha256(v2).hexdigest()[:16] == "745085a5d9e99437"

    ring = TimeRing(geometry(FEATURE_WINDOWS, 8))
    rng = random.Random(7)
    v, t = None, T0
    for i in range(500):
        t += rng.randrange(0, HOUR_MS)
        incr = np.array([1, rng.randrange(2), 0, 0, 0, rng.randrange(10000), 0, 1], np.int64)
        at = t - rng.randrange(0, 40 * DAY_MS) if i % 50 == 0 else t
        v = ring.update_one(v, Increment(at, incr))
    assert (hashlib.sha256(v).hexdigest()[:16], len(v)) == ("38c106dbf703f3c0", 4392)
    assert ring.read_one(v, t).tolist() == [
        [56, 24, 0, 0, 0, 247837, 0, 56],
        [329, 161, 0, 0, 0, 1540538, 0, 329],
        [494, 242, 0, 0, 0, 2374315, 0, 494],
    ]


# --- the contract every Ring implementation keeps -------------------------------------------


@dataclass(frozen=True)
class Case:
    """A codec and a way to make its i-th event of a stream (times increasing with i)."""

    name: str
    ring: Ring[Any, Any]
    span: int  # events that fill the window: older ones no longer count
    late_is_dropped: bool  # an event stamped before the window, arriving last, is ignored

    def event(self, i: int, rng: random.Random, stale: bool = False) -> Any:
        if isinstance(self.ring, CountRing):
            return rng.randrange(3)
        t = T0 + i * HOUR_MS - (60 * DAY_MS if stale else 0)
        return Increment(t, np.array([1, rng.randrange(2), rng.randrange(500)], np.int64))

    def at(self, i: int) -> int:
        return T0 + i * HOUR_MS


CASES = [
    Case("count", CountRing(50, min_samples=20), span=50, late_is_dropped=False),
    Case("time", TimeRing(geometry(((HOUR_MS, 24), (DAY_MS, 7)), 3)), span=7 * 24,
         late_is_dropped=True),
    Case("time-reference", reference.TimeRing(geometry(((HOUR_MS, 24), (DAY_MS, 7)), 3)),
         span=7 * 24, late_is_dropped=True),
]  # fmt: skip


def same(a: Any, b: Any) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def run(case: Case, n: int, seed: int, value: bytes | None = None, start: int = 0) -> bytes:
    rng = random.Random(seed)
    for i in range(start, start + n):
        value = case.ring.update_one(value, case.event(i, rng))
    assert value is not None
    return value


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request) -> Case:
    return request.param


def test_empty_then_update_then_read(case):
    ring = case.ring
    empty = ring.empty()
    assert isinstance(empty, bytes)
    assert same(ring.read_one(empty, case.at(0)), ring.read_one(None, case.at(0)))
    assert not np.asarray(ring.read_one(None, case.at(0))).any()
    e = case.event(0, random.Random(1))
    one = ring.update_one(None, e)
    assert ring.update_one(empty, e) == one  # an empty value and a missing key are one state
    assert np.asarray(ring.read_one(one, case.at(0))).any()


def test_the_value_round_trips_through_bytes(case):
    value = run(case, 80, seed=2)
    copied = bytes(bytearray(value))  # what a table's changelog gives back
    assert same(case.ring.read_one(copied, case.at(80)), case.ring.read_one(value, case.at(80)))
    assert run(case, 30, 3, copied, start=80) == run(case, 30, 3, value, start=80)


def test_an_event_older_than_the_window_does_not_corrupt_newer_state(case):
    ring = case.ring
    rng = random.Random(4)
    stale = ring.update_one(None, case.event(0, rng, stale=True))
    n = case.span + 5
    fresh = run(case, n, seed=5, start=1)
    after_stale = run(case, n, seed=5, value=stale, start=1)
    assert same(ring.read_one(after_stale, case.at(n)), ring.read_one(fresh, case.at(n)))
    if case.late_is_dropped:
        late = ring.update_one(fresh, case.event(n, rng, stale=True))
        assert same(ring.read_one(late, case.at(n)), ring.read_one(fresh, case.at(n)))


def test_updates_are_deterministic_and_never_modify_their_input(case):
    a = run(case, 120, seed=6)
    assert run(case, 120, seed=6) == a
    frozen = bytes(a)
    case.ring.update_one(a, case.event(120, random.Random(7)))
    assert a == frozen
