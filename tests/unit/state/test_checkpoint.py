"""Checkpointed state: one write per key per checkpoint, and a crash loses and doubles nothing."""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.features.online import FeatureState
from app.harness.sample import SampleTraffic
from app.state.checkpoint import (
    NO_MARK,
    Checkpointed,
    Current,
    Publication,
    card_group,
    decode,
    encode,
)
from app.state.windows.count import CountRing, snapshot_bytes, update_success_rate
from app.state.windows.residual import Decay, published, update_residuals


class FakeTable:
    """A table as a checkpoint sees it: per-partition values and the changelog it was sent."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.partition_of: dict[bytes, int] = {}
        self.changelog: list[tuple[int, bytes, bytes]] = []

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, partition: int, key: bytes, value: bytes) -> None:
        self.changelog.append((partition, key, value))
        self.data[key] = value
        self.partition_of[key] = partition

    def restored(self, upto: int | None = None) -> FakeTable:
        """A new table rebuilt from the first `upto` changelog messages (a crash mid-flush)."""
        t = FakeTable()
        for p, k, v in self.changelog[:upto]:
            t.write(p, k, v)
        return t


def outcomes(n: int, seed: int = 5) -> list[dict[str, Any]]:
    world = SampleTraffic(seed, cards=40)  # few cards: keys are hit many times
    out = []
    for i in range(n):
        r = world.next_request(1_767_225_600_000 + i * 30_000)
        out.append(world.outcome(r, r["candidates"][i % len(r["candidates"])]["route_id"],
                                 r["event_time"] + 50))  # fmt: skip
    return out


def test_updates_are_staged_and_written_once_per_key_per_checkpoint():
    t = FakeTable()
    st = Checkpointed(t, t.write, sources=2)
    for off in range(10):
        st.applying(1, 0, off)[b"k"] = b"v%d" % off
    assert st.get(b"k") == b"v9" and t.changelog == []  # reads see the stage
    assert st.checkpoint() == 1
    assert len(t.changelog) == 1 and t.changelog[0][0] == 1
    marks, payload = decode(t.data[b"k"], 2)
    assert payload == b"v9" and marks == [9, NO_MARK]
    assert st.checkpoint() == 0  # nothing staged: nothing written


def test_an_event_at_or_below_its_keys_mark_is_skipped():
    t = FakeTable()
    st = Checkpointed(t, t.write, sources=2)
    v = st.applying(0, 1, 7)
    v[b"a"] = b"1"
    v[b"a"] = b"2"  # the same event may write a key twice (it is one application)
    assert v.applied() and st.get(b"a") == b"2"
    again = st.applying(0, 1, 7)
    again[b"a"] = b"3"
    assert not again.applied() and st.get(b"a") == b"2"
    older = st.applying(0, 1, 3)
    older[b"a"] = b"4"
    assert st.get(b"a") == b"2"
    other_source = st.applying(0, 0, 3)  # marks are per source partition
    other_source[b"a"] = b"5"
    assert other_source.applied() and st.get(b"a") == b"5"


def test_groups_share_one_value_and_publish_each_key():
    t, pub = FakeTable(), FakeTable()
    st = Checkpointed(t, t.write, 1, group=card_group, publish=Publication(pub.write))
    v = st.applying(2, 0, 0)
    v[b"card|c1"] = b"x"
    v[b"card_merchant|c1|m1"] = b"y"
    v[b"card_last|c1"] = b"z"
    v[b"card|c2"] = b"w"
    assert st.checkpoint() == 2
    assert sorted(k for _, k, _ in t.changelog) == [b"card:c1", b"card:c2"]
    fresh = Checkpointed(t, t.write, 1, group=card_group)  # a restarted worker reads it back
    assert fresh.get(b"card_merchant|c1|m1") == b"y" and fresh.get(b"card_last|c1") == b"z"
    assert fresh.get(b"card_merchant|c1|m2") is None and fresh.get(b"card|c3") is None
    assert pub.data[b"card|c2"] == b"w" and len(pub.changelog) == 4


def test_published_as_transforms_what_readers_see_per_key():
    """The route owner's table holds success-rate rings and residual sums side by side; the
    publication sees each key with its payload, so a ring goes out as its compact snapshot and
    a res| value as it is."""
    t, pub = FakeTable(), FakeTable()
    ring = CountRing(5)
    st = Checkpointed(t, t.write, 1, publish=Publication(pub.write, published))
    cur = Current()
    o = outcomes(1)[0]
    cur.view = st.applying(0, 0, 0)
    update_success_rate(cur, o, ring)
    update_residuals(cur, o, 0.8, Decay())
    st.checkpoint()
    res_keys = [k for k in pub.data if k.startswith(b"res|")]
    ring_keys = [k for k in pub.data if not k.startswith(b"res|")]
    assert len(res_keys) == len(ring_keys) == 3
    for k in ring_keys:
        assert pub.data[k] == snapshot_bytes(st.get(k)) != st.get(k)
    for k in res_keys:
        assert pub.data[k] == st.get(k) and len(pub.data[k]) == 32


def test_a_value_of_another_format_is_refused():
    with pytest.raises(ValueError, match="format"):
        decode(b"\x09\x00abc", 1)
    assert decode(encode([4], b"p"), 3) == ([4, NO_MARK, NO_MARK], b"p")


def test_direct_writes_are_refused():
    st = Checkpointed(FakeTable(), FakeTable().write, 1)
    with pytest.raises(TypeError, match="applying"):
        st[b"k"] = b"v"


def test_drop_forgets_the_stage_of_revoked_partitions():
    t = FakeTable()
    st = Checkpointed(t, t.write, 1)
    st.applying(0, 0, 0)[b"a"] = b"1"
    st.applying(1, 0, 1)[b"b"] = b"2"
    st.drop({1})
    assert st.get(b"b") is None and st.checkpoint() == 1 and b"a" in t.data


def _apply(store: Checkpointed, events: list[tuple[int, dict[str, Any]]]) -> None:
    cur = Current()
    fs = FeatureState({"card": cur})
    ring = CountRing(7)
    sr = Current()
    for off, o in events:
        cur.view = store.applying(0, 0, off)
        fs.update_outcome(o, "card")
        sr.view = store.applying(0, 0, off)
        update_success_rate(sr, o, ring)


def _payloads(table: FakeTable) -> dict[bytes, bytes]:
    return {k: decode(v, 1)[1] for k, v in table.data.items()}


@pytest.mark.parametrize("seed", range(16))
def test_a_crash_anywhere_loses_nothing_and_doubles_nothing(seed):
    """Events 0..n-1 on one partition; checkpoints at random points; a crash at a random point
    (possibly half way through a checkpoint's changelog), then a restart that restores the
    changelog and replays from the last committed offset (a commit follows a checkpoint).
    The final state equals one straight pass."""
    rng = random.Random(seed)
    evs = list(enumerate(outcomes(300, seed)))
    straight_t = FakeTable()
    straight = Checkpointed(straight_t, straight_t.write, 1, group=card_group)
    _apply(straight, evs)
    straight.checkpoint()

    t = FakeTable()
    st = Checkpointed(t, t.write, 1, group=card_group)
    crash_at = rng.randrange(1, len(evs))
    committed, durable = 0, 0  # offset committed, changelog messages flushed by that commit
    i = 0
    while i < crash_at:
        step = rng.randrange(1, 40)
        _apply(st, evs[i : min(i + step, crash_at)])
        i = min(i + step, crash_at)
        if rng.random() < 0.6:
            st.checkpoint()
            if rng.random() < 0.7:  # the commit after a checkpoint may not come in time
                committed, durable = i, len(t.changelog)
    # crash: what was sent after the last commit may be lost, in part (a cut changelog)
    t2 = t.restored(rng.randrange(durable, len(t.changelog) + 1))
    again = Checkpointed(t2, t2.write, 1, group=card_group)
    _apply(again, evs[committed:])
    again.checkpoint()
    assert _payloads(t2) == _payloads(straight_t)
