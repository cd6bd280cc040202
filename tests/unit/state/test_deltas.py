"""Owner deltas: batches carry every outcome for an owner partition, with source offsets."""

from __future__ import annotations

import math
import struct

import pytest

from app.config import Settings
from app.contracts.codec import Codec
from app.harness.sample import SampleTraffic
from app.state import deltas
from app.state.deltas import OWNER_TAGS, BatchError, DeltaBatcher, owner_partition, read_batch


def _outcomes(n):
    world = SampleTraffic(3)
    out = []
    for i in range(n):
        r = world.next_request(1_767_225_600_000 + i * 1000)
        out.append(world.outcome(r, r["candidates"][0]["route_id"], r["event_time"] + 10))
    return out


def test_each_outcome_reaches_the_owner_partition_of_each_of_its_keys():
    codec = Codec(Settings())
    b = DeltaBatcher(4)
    outs = _outcomes(50)
    for off, o in enumerate(outs):
        b.add(o, codec.outcome.encode(o), source=2, offset=100 + off)
    got: dict[tuple[int, str], list[int]] = {}
    for q, value in b.drain():
        source, items = read_batch(value)
        assert source == 2
        for off, owner, p, raw in items:
            assert math.isnan(p)  # added without a model p
            rec = codec.outcome.decode(raw)
            assert owner_partition(rec[OWNER_TAGS[owner][1]], 4) == q
            got.setdefault((q, owner), []).append(off)
    per_owner = {o: sorted(x for (q, ow), offs in got.items() if ow == o for x in offs)
                 for o in OWNER_TAGS}  # fmt: skip
    assert all(v == list(range(100, 150)) for v in per_owner.values())
    for offs in got.values():  # in offset order within a batch
        assert offs == sorted(offs)
    assert b.drain() == [] and b.pending == 0


def test_batches_are_cut_below_the_message_limit(monkeypatch):
    monkeypatch.setattr(deltas, "MAX_BATCH_BYTES", 2000)
    codec = Codec(Settings())
    b = DeltaBatcher(1)
    for off, o in enumerate(_outcomes(40)):
        b.add(o, codec.outcome.encode(o), 0, off)
    msgs = b.drain()
    assert len(msgs) > 3 and all(len(v) < 2000 + 400 for _, v in msgs)
    offs = [off for _, v in msgs for off, _, _, _ in read_batch(v)[1]]
    assert sorted(offs) == sorted(o for o in range(40) for _ in range(3))


_P = struct.pack(">d", 0.5)  # an item's model p


@pytest.mark.parametrize(
    "value, match",
    [(b"", "shorter"), (b"\x07\x00\x00", "format 7"),
     (b"\x01\x00\x00" + b"\x00" * 8 + b"R" + b"\x00\x00\x00\x01x", "format 1, expected 2"),
     (b"\x02\x00\x00" + b"\x00" * 20, "truncated item header"),
     (b"\x02\x00\x00" + b"\x00" * 8 + b"Z" + _P + b"\x00\x00\x00\x01x", "unknown owner tag"),
     (b"\x02\x00\x00" + b"\x00" * 8 + b"R" + _P + b"\x00\x00\x00\x09x", "announced")],
)  # fmt: skip
def test_malformed_batches_raise(value, match):
    with pytest.raises(BatchError, match=match):
        _, items = read_batch(value)
        list(items)


def test_owner_partition_is_stable():
    # crc32 of the key: the same in every process and version (backfill places state by it)
    import zlib

    assert owner_partition("acq-eu", 7) == zlib.crc32(b"acq-eu") % 7 == 6  # pinned


def test_v2_items_carry_the_model_p_bit_for_bit_and_nan_for_none():
    """The route owner learns the residuals from the p an item carries: a probe or an
    unscored outcome (None) must arrive as NaN, every other p exactly as the scorer gave it."""
    codec = Codec(Settings())
    b = DeltaBatcher(3)
    outs = _outcomes(30)
    given = [None if i % 3 == 0 else 0.1 + i / 37.0 for i in range(len(outs))]
    raws = [codec.outcome.encode(o) for o in outs]
    for off, (raw, p) in enumerate(zip(raws, given, strict=True)):
        b.add(outs[off], raw, source=1, offset=off, model_p=p)
    seen: dict[tuple[int, str], float] = {}
    for _, value in b.drain():
        assert value[0] == 2  # format version
        source, items = read_batch(value)
        assert source == 1
        for off, owner, p, raw in items:
            assert raw == raws[off]
            seen[(off, owner)] = p
    assert len(seen) == len(outs) * len(OWNER_TAGS)
    for (off, _), p in seen.items():
        want = given[off]
        assert math.isnan(p) if want is None else p == want
