from app.state.owned import OwnedState
from app.state.windows.count import APPROVED, CountRing, snapshot_bytes, unpack_snapshot


class Recording(dict):
    """A dict that remembers how often each key was written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: dict[bytes, int] = {}

    def __setitem__(self, key, value) -> None:
        self.writes[key] = self.writes.get(key, 0) + 1
        super().__setitem__(key, value)


def test_every_update_is_written_and_every_nth_published():
    table, published = Recording(), Recording()
    owned = OwnedState(table, published, every=4)
    seen = []
    for i in range(10):
        owned[b"k"] = b"%d" % i
        seen.append(published[b"k"])
    assert table.writes[b"k"] == 10 and owned.get(b"k") == b"9" == table[b"k"]
    # the first update publishes, then every 4th
    assert seen == [b"0", b"0", b"0", b"0", b"4", b"4", b"4", b"4", b"8", b"8"]
    assert owned.get(b"other") is None


def test_young_keys_publish_every_update_then_every_nth():
    ring = CountRing(125, min_samples=3)
    table, published = Recording(), Recording()
    owned = OwnedState(table, published, every=5, young=ring.young, published_as=snapshot_bytes)
    samples = []
    for _ in range(12):
        owned[b"r|all"] = ring.update_one(owned.get(b"r|all"), APPROVED)
        samples.append(unpack_snapshot(published[b"r|all"]).samples)
    assert samples == [1, 2, 3, 3, 3, 3, 3, 8, 8, 8, 8, 8]
    assert ring.read_one(table[b"r|all"]).samples == 12


def test_forget_clears_the_staged_counts():
    table, published = Recording(), Recording()
    owned = OwnedState(table, published, every=10)
    owned[b"k"] = b"a"
    owned[b"k"] = b"b"
    assert published[b"k"] == b"a"
    owned.forget()  # revoked: when the key comes back, its first update publishes
    owned[b"k"] = b"c"
    assert published[b"k"] == b"c" and published.writes[b"k"] == 2
