"""Owner deltas: batches carry every outcome for an owner partition, with source offsets."""

from __future__ import annotations

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
        for off, owner, raw in items:
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
    offs = [off for _, v in msgs for off, _, _ in read_batch(v)[1]]
    assert sorted(offs) == sorted(o for o in range(40) for _ in range(3))


@pytest.mark.parametrize(
    "value, match",
    [(b"", "shorter"), (b"\x07\x00\x00", "format 7"), (b"\x01\x00\x00" + b"\x00" * 5, "truncated"),
     (b"\x01\x00\x00" + b"\x00" * 8 + b"Z" + b"\x00\x00\x00\x01x", "unknown owner tag"),
     (b"\x01\x00\x00" + b"\x00" * 8 + b"R" + b"\x00\x00\x00\x09x", "announced")],
)  # fmt: skip
def test_malformed_batches_raise(value, match):
    with pytest.raises(BatchError, match=match):
        _, items = read_batch(value)
        list(items)


def test_owner_partition_is_stable():
    # crc32 of the key: the same in every process and version (backfill places state by it)
    import zlib

    assert owner_partition("acq-eu", 7) == zlib.crc32(b"acq-eu") % 7 == 6  # pinned
