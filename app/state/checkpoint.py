"""Checkpointed state: updates staged in memory, written once per key per checkpoint.

The pattern Quix Streams uses: an agent's updates go to an in-memory stage that reads see
first; a checkpoint (every AUTHPILOT_STATE_CHECKPOINT_MS, and before every offset commit: see
`install_before_commit`) writes each staged key once to its table (one RocksDB put and one
changelog message) and publishes it once to the GlobalTable other workers read; then Faust
flushes the producer and commits the offsets. Writing every update measured as the worker's
bottleneck (a payment cost ~10 table writes, each a changelog message: 453 payments/s).

Idempotent by source offset. Every stored value carries, per source partition, the offset of
the last event applied to it (its marks); an event at or below its key's mark is skipped, so:
- a crash loses nothing: a checkpoint precedes every commit, and Faust flushes the producer
  before it commits, so the effect of every committed event is in the changelog;
- a crash doubles nothing: the events after the last commit are replayed, and those whose
  effect reached the changelog before the crash are recognised by their key's marks (marks
  are per key, so a checkpoint cut half way by the crash is exact as well);
- what a crash costs: the replay recomputes what was staged, and readers on other workers
  see published values up to one checkpoint interval late (as they always do).
An event redelivered at another offset (a gateway sending an outcome twice) is a different
event to this layer: dedupe by request_id belongs above it.

Groups: keys always read and written together can share one stored value (one put, one
changelog message, one read): the card entities of one card are one value per card.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol

_HEADER = struct.Struct(">BB")  # format version, number of marks
_VERSION = 1
_MARK = struct.Struct(">q")
_ENTRY = struct.Struct(">HI")  # group entry: key length, value length
NO_MARK = -1  # nothing applied from that source partition yet


class TableLike(Protocol):
    """What a checkpoint needs of a Faust table (or a test double): read, and a changelogged
    write to an explicit partition (`write_at`)."""

    def get(self, key: bytes, /) -> bytes | None: ...


Writer = Callable[[int, bytes, bytes], None]  # (partition, key, value) -> changelogged put


def faust_writer(table: Any) -> Writer:
    """A changelogged put into a Faust table at an explicit partition, outside of stream
    iteration: Faust's own `table[key] = value` takes the partition from the event being
    processed, and a checkpoint runs between events (a timer, a commit). The same two steps
    Faust takes on a set: the changelog message (public `send_changelog`) and the store put
    into that partition's database."""
    store = table.data
    db_for = getattr(store, "_db_for_partition", None)

    def write(partition: int, key: bytes, value: bytes) -> None:
        table.send_changelog(partition, key, value)
        if db_for is not None:  # RocksDB: one database per partition
            db_for(partition).put(key, value)
            store._key_index[key] = partition
        else:  # memory:// (tests, the local demo without RocksDB)
            store.data[key] = value

    return write


def encode(marks: list[int], payload: bytes) -> bytes:
    return _HEADER.pack(_VERSION, len(marks)) + b"".join(_MARK.pack(m) for m in marks) + payload


def decode(value: bytes, sources: int) -> tuple[list[int], bytes]:
    """(marks resized to `sources`, payload). A value without a header (written before marks
    existed) or with another version is refused rather than misread."""
    version, n = _HEADER.unpack_from(value)
    if version != _VERSION:
        raise ValueError(f"state value format {version}, expected {_VERSION}: rebuild the state")
    end = _HEADER.size + n * _MARK.size
    marks = [_MARK.unpack_from(value, _HEADER.size + i * _MARK.size)[0] for i in range(n)]
    if n < sources:
        marks += [NO_MARK] * (sources - n)
    return marks[:sources] if n > sources else marks, value[end:]


def pack_group(entries: MutableMapping[bytes, bytes]) -> bytes:
    parts = []
    for k, v in entries.items():
        parts.append(_ENTRY.pack(len(k), len(v)))
        parts.append(k)
        parts.append(v)
    return b"".join(parts)


def unpack_group(payload: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    i, n = 0, len(payload)
    while i < n:
        kl, vl = _ENTRY.unpack_from(payload, i)
        i += _ENTRY.size
        k = payload[i : i + kl]
        i += kl
        out[k] = payload[i : i + vl]
        i += vl
    return out


def _same(key: bytes, value: bytes) -> bytes:
    return value


class _Entry:
    """A staged value: where it lives, its marks, and its payload (a group: its entries)."""

    __slots__ = ("entries", "marks", "partition", "payload")

    def __init__(
        self, partition: int, marks: list[int], payload: bytes | None,
        entries: dict[bytes, bytes] | None,
    ) -> None:  # fmt: skip
        self.partition = partition
        self.marks = marks
        self.payload = payload
        self.entries = entries


class Publication:
    """Where a checkpoint publishes a key for every worker: a GlobalTable writer and what it
    holds of a payload (the value itself, or a compact snapshot)."""

    def __init__(self, write: Writer,
                 published_as: Callable[[bytes, bytes], bytes] | None = None):  # fmt: skip
        self.write = write
        self.published_as = published_as


class Checkpointed:
    """A `Store` (get/set of payload bytes) over a table, staged and checkpointed as above.

    Reads (`get`) see staged values first. Writes go through `applying(partition, source,
    offset)`, a view for one event: `partition` is where the keys live (the partition the
    event is processed on), `source`/`offset` identify the event for the marks. With
    `group`, keys mapping to one group key share one stored value."""

    def __init__(
        self,
        table: TableLike,
        write: Writer,
        sources: int,
        group: Callable[[bytes], bytes] | None = None,
        publish: Publication | None = None,
    ) -> None:
        self._table = table
        self._write = write
        self.sources = sources
        self._group = group
        self._publish = publish
        self._staged: dict[bytes, _Entry] = {}
        self._read: tuple[bytes, _Entry | None] | None = None  # last group read (the score
        # agent reads 4 card keys of one card per request: one decode, not four)

    # -- reads -------------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        entry = self._find(self._group(key) if self._group is not None else key)
        if entry is None:
            return None
        if entry.entries is not None:
            return entry.entries.get(key)
        return entry.payload

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise TypeError("checkpointed state is written through applying(partition, source, "
                        "offset), which knows the event and its marks")  # fmt: skip

    def marks(self, key: bytes) -> list[int]:
        """The marks of the value holding `key` (NO_MARK everywhere for a missing key)."""
        entry = self._find(self._group(key) if self._group is not None else key)
        return list(entry.marks) if entry is not None else [NO_MARK] * self.sources

    def _find(self, g: bytes) -> _Entry | None:
        """The staged value of group g, else the last one read, else the table's (read and
        decoded once: an outcome asks for its card's marks, ids and rings in turn)."""
        entry = self._staged.get(g)
        if entry is not None:
            return entry
        cached = self._read
        if cached is not None and cached[0] == g:
            return cached[1]
        entry = self._load(g)
        self._read = (g, entry)
        return entry

    def _load(self, g: bytes) -> _Entry | None:
        raw = self._table.get(g)
        if raw is None:
            return None
        marks, payload = decode(raw, self.sources)
        if self._group is not None:
            return _Entry(0, marks, None, unpack_group(payload))  # partition: set when staged
        return _Entry(0, marks, payload, None)

    # -- writes ------------------------------------------------------------------------------
    def applying(self, partition: int, source: int, offset: int) -> Applying:
        return Applying(self, partition, source, offset)

    def _set(self, view: Applying, key: bytes, value: bytes) -> None:
        g = self._group(key) if self._group is not None else key
        entry = self._staged.get(g)
        if entry is None:
            entry = self._find(g)
            if entry is None:
                entry = _Entry(view.partition, [NO_MARK] * self.sources, None,
                               {} if self._group is not None else None)  # fmt: skip
            else:
                entry.partition = view.partition
            self._staged[g] = entry
            self._read = None
        fresh = view.fresh.get(g)
        if fresh is None:  # first write of this event to this value: applied before?
            fresh = view.fresh[g] = entry.marks[view.source] < view.offset
            if fresh:
                entry.marks[view.source] = view.offset
        if not fresh:
            return
        if entry.entries is not None:
            entry.entries[key] = value
        else:
            entry.payload = value

    # -- checkpoint --------------------------------------------------------------------------
    @property
    def staged(self) -> int:
        return len(self._staged)

    def checkpoint(self) -> int:
        """Write every staged value once (and publish it), then forget the stage; returns the
        number of values written."""
        staged, self._staged = self._staged, {}
        self._read = None
        pub = self._publish
        as_pub = (pub.published_as if pub is not None else None) or _same
        for g, e in staged.items():
            if e.entries is not None:
                payload = pack_group(e.entries)
            else:
                assert e.payload is not None
                payload = e.payload
            self._write(e.partition, g, encode(e.marks, payload))
            if pub is not None:
                if e.entries is not None:
                    for k, v in e.entries.items():
                        pub.write(e.partition, k, as_pub(k, v))
                else:
                    pub.write(e.partition, g, as_pub(g, payload))
        return len(staged)

    def drop(self, partitions: Iterable[int] | None = None) -> None:
        """Forget staged values (of `partitions`, or all) without writing them: after a
        revocation another worker replays those events from the committed offsets."""
        self._read = None
        if partitions is None:
            self._staged.clear()
            return
        gone = set(partitions)
        self._staged = {g: e for g, e in self._staged.items() if e.partition not in gone}


class Applying:
    """A `Store` view that applies one event (source partition, offset) at most once."""

    __slots__ = ("fresh", "offset", "partition", "source", "store")

    def __init__(self, store: Checkpointed, partition: int, source: int, offset: int) -> None:
        self.store = store
        self.partition = partition
        self.source = source
        self.offset = offset
        self.fresh: dict[bytes, bool] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.store._set(self, key, value)

    def applied(self) -> bool:
        """Whether this event changed anything (False: every value it touched had seen it)."""
        return any(self.fresh.values())


class Current:
    """A `Store` that forwards to the view of the event being applied: code that holds one
    store per owner for its life (FeatureState) applies each event through the view set here."""

    __slots__ = ("view",)

    def __init__(self) -> None:
        self.view: Applying | None = None

    def get(self, key: bytes) -> bytes | None:
        assert self.view is not None, "no event is being applied"
        return self.view.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        assert self.view is not None, "no event is being applied"
        self.view[key] = value


def card_group(key: bytes) -> bytes:
    """The group of a card-owned key: every card entity is keyed `<entity>|<card>|...`, so a
    card's entities (and its last decline) are one value per card."""
    return b"card:" + key.split(b"|", 2)[1]
