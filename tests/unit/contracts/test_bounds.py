"""Input bounds: the event-time clock (wall and stream), the key, the message size, and why the
bound is enough for the time rings."""

from __future__ import annotations

import numpy as np
import pytest

from app.config import Settings
from app.contracts.bounds import EventClock, check_key, header_bytes, message_bytes
from app.contracts.validate import ValidationError
from app.contracts.vocab import DAY_MS, EPOCH_MS_MAX, MINUTE_MS
from app.features.definitions import ENTITIES
from app.state.windows.time import Increment, TimeRing, geometry

NOW = 1_796_000_000_000  # 2026-12-01
AHEAD = 5 * MINUTE_MS
BEHIND = 7 * DAY_MS


class Wall:
    """An injectable wall clock."""

    def __init__(self, t: int = NOW) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def _refused(clock: EventClock, t: int) -> str:
    with pytest.raises(ValidationError) as err:
        clock.admit(t)
    assert err.value.field == "event_time"
    return err.value.detail


def test_wall_clock_accepts_within_the_bounds_and_says_why_it_refuses():
    c = EventClock("wall", AHEAD, BEHIND, now=Wall())
    for t in (NOW, NOW + AHEAD, NOW - BEHIND, NOW - 1000):
        c.admit(t)
    detail = _refused(c, NOW + AHEAD + 1)
    assert "ahead of the wall clock" in detail and "5.0 min allowed" in detail
    assert "behind the wall clock" in _refused(c, NOW - BEHIND - 1)
    assert "10950.0 days ahead" in _refused(c, NOW + 30 * 365 * DAY_MS)
    assert "epoch milliseconds" in _refused(c, NOW + 100 * 365 * DAY_MS)
    assert "epoch milliseconds" in _refused(c, 2**62)
    assert "epoch milliseconds" in _refused(c, -5)
    assert "epoch milliseconds" in _refused(c, 0)


def test_stream_clock_follows_the_stream_and_refuses_one_outlier():
    wall = Wall()
    c = EventClock("stream", AHEAD, BEHIND, speed=60, now=wall)
    sim = 1_700_000_000_000  # far from the wall clock: the simulator's world
    c.admit(sim)  # the first record anchors the clock
    for i in range(1, 100):
        c.admit(sim + i * 1000)
    newest = sim + 99_000
    assert c.newest == newest
    assert "ahead of the stream clock" in _refused(c, newest + 30 * 365 * DAY_MS)
    _refused(c, newest + 100 * 365 * DAY_MS)
    assert "ahead of the stream clock" in _refused(c, newest + AHEAD + 1)
    assert "behind the stream clock" in _refused(c, newest - BEHIND - 1)
    assert c.newest == newest, "a refused record does not move the clock"
    c.admit(newest + 1)  # and the stream goes on
    # a quiet stream moves on at `speed`: 10 s of wall time is 10 simulated minutes
    wall.t += 10_000
    c.admit(newest + 1 + 10 * MINUTE_MS + AHEAD)
    assert "ahead" in _refused(c, c.newest + 10_000 * 60 + AHEAD + 10)


def test_stream_clock_first_record_is_held_to_the_plausible_epoch():
    c = EventClock("stream", AHEAD, BEHIND, now=Wall())
    _refused(c, 2**62)
    _refused(c, -1)
    _refused(c, EPOCH_MS_MAX)
    assert c.newest is None
    c.admit(1_700_000_000_000)
    assert c.newest == 1_700_000_000_000


def test_stream_clock_resyncs_after_agreeing_refusals_only():
    c = EventClock("stream", AHEAD, BEHIND, resync=4, now=Wall())
    outlier = 3_000_000_000_000  # 2065: plausible as a first record, so it anchors
    c.admit(outlier)
    real = 1_700_000_000_000
    for i in range(3):
        _refused(c, real + i)
    c.admit(real + 3)  # the 4th agreeing refusal re-anchors on the real stream
    assert c.newest == real + 3
    c.admit(real + 10)
    _refused(c, outlier)  # and the outlier is now the one refused


def test_stream_clock_resync_needs_agreement():
    c = EventClock("stream", AHEAD, BEHIND, resync=3, now=Wall())
    c.admit(1_700_000_000_000)
    # scattered outliers do not agree with one another: no re-anchor
    for t in (2_500_000_000_000, 3_000_000_000_000, 3_500_000_000_000, 4_000_000_000_000):
        _refused(c, t)
    assert c.newest == 1_700_000_000_000
    # refusals interrupted by accepted records never add up either
    for _ in range(5):
        _refused(c, 2_500_000_000_000)
        c.admit(1_700_000_000_001)
    assert c.newest == 1_700_000_000_001


def test_default_bounds_are_the_documented_ones():
    s = Settings()
    assert s.event_time_clock == "wall"
    assert s.event_time_max_ahead_s == 300 and s.event_time_max_behind_s == 7 * 86400
    assert s.web_host == "127.0.0.1"


def test_the_ahead_bound_is_no_wider_than_the_narrowest_ring_bucket():
    """Why the bound is enough for the rings (app.contracts.bounds): an admitted record lands
    at most one bucket ahead."""
    narrowest = min(w.width_s for e in ENTITIES for w in e.windows)
    assert Settings().event_time_max_ahead_s <= narrowest


@pytest.mark.parametrize("width_s,buckets", [(300, 12), (3600, 24), (86400, 7), (86400, 30)])
def test_a_record_the_bound_admits_never_blocks_a_window(width_s, buckets):
    """Every window of the feature rings: a record at the worst admitted time (now + ahead)
    holds no slot past the time real records reach it, so every later record counts; the
    record 100 years ahead (refused by the bound) would have blocked a slot for 100 years."""
    ring = TimeRing(geometry([(width_s * 1000, buckets)], 1))
    step = width_s * 1000 // 4
    ahead = int(Settings().event_time_max_ahead_s * 1000)

    def run(outlier_at: int | None) -> list[int]:
        v = ring.empty()
        t = NOW
        for i in range(buckets * 4):  # a window's worth of records, 4 per bucket
            v = ring.update_one(v, Increment(t + i * step, [1]))
        now = t + buckets * 4 * step
        if outlier_at is not None:
            v = ring.update_one(v, Increment(now + outlier_at, [1]))
        counts = []
        for j in range(buckets * 4):  # the next window's worth, read as it goes
            at = now + j * step
            v = ring.update_one(v, Increment(at, [1]))
            counts.append(int(ring.read_one(v, at)[0, 0]))
        return counts

    clean = run(None)
    admitted = run(ahead)
    far = run(100 * 365 * DAY_MS)
    # the admitted record counts once when its bucket is read, and retires at most the
    # oldest bucket early: never fewer than the clean run minus one bucket's records
    assert all(a >= c - 4 for a, c in zip(admitted, clean, strict=True))
    assert admitted[-1] >= clean[-1]  # nothing is lost for good
    assert far[-1] < clean[-1], "without the bound an outlier would block a slot"
    assert np.all(np.diff(np.array(admitted[buckets * 2 :])) >= -4)


def test_key_must_be_the_card():
    check_key(b"card-1", "card-1")
    with pytest.raises(ValidationError) as err:
        check_key(None, "card-1")
    assert err.value.field == "key" and "null key" in err.value.detail
    with pytest.raises(ValidationError) as err:
        check_key(b"card-2", "card-1")
    assert err.value.field == "key" and "does not own the card" in err.value.detail
    with pytest.raises(ValidationError):
        check_key(b"x" * 1_000_000, "card-1")  # a huge key is shown cut
    with pytest.raises(ValidationError):
        check_key("card-1".encode("utf-16"), "card-1")


def test_message_bytes_count_key_value_and_headers():
    assert message_bytes(None, None, None) == 0
    assert message_bytes(b"k", b"vv", [("h", b"123"), ("h", None)]) == 1 + 2 + 4 + 1
    assert header_bytes({"é": b"ab"}) == 4  # keys count as UTF-8


def test_stream_clock_moves_from_when_the_newest_record_was_produced():
    """A worker lagging its producer: records produced during a 6 s stall at 60x are 6
    simulated minutes ahead when they arrive, and are admitted."""
    wall = Wall()
    c = EventClock("stream", AHEAD, BEHIND, speed=60, now=wall)
    sim = 1_700_000_000_000
    c.admit(sim, produced_ms=wall.t)
    wall.t += 6_000  # the worker stalls 6 s; the producer went on at 60x
    c.admit(sim + 6 * MINUTE_MS, produced_ms=wall.t - 10)  # produced just before
    assert c.newest == sim + 6 * MINUTE_MS
    # a timestamp from the future does not widen the allowance past the wall clock
    c.admit(sim + 6 * MINUTE_MS + 1, produced_ms=wall.t + 10 * DAY_MS)
    _refused(c, sim + 6 * MINUTE_MS + AHEAD + 10_000)
