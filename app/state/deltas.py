"""Owner deltas: outcomes forwarded to the owners of their route / BIN / merchant keys, batched.

Statistics keyed by route, BIN or merchant span every card partition, so each key has one owner
(the owner-updates partition the key maps to) and the outcome agent forwards each outcome to
the owner of each of its three keys. Forwarding one message per outcome and owner made the
owners the slowest stage (three internal Faust events per outcome: 453 payments/s closed loop,
a week of history replayed at 230-340 outcomes/s). Now the outcome agent batches them: at each
checkpoint, one message per (owner partition, source partition) carrying every outcome that
partition's owners need, each as its Avro bytes (as received), its owner kind, its source
offset, so the owner applies each outcome at most once per key (app.state.checkpoint marks),
and the model's p for the route taken (NaN when none may teach the online correction: no model
scored it, or it probed a demoted route; the route owner keeps the residuals,
app.state.windows.residual).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from typing import Any

# owner kind -> (1-byte tag, record field that keys it)
OWNER_TAGS = {"route": (b"R", "route_id"), "bin": (b"B", "bin"), "merchant": (b"M", "merchant_id")}
_BY_TAG = {tag[0]: owner for owner, (tag, _) in OWNER_TAGS.items()}
_FIELDS = tuple((tag[0], field) for tag, field in OWNER_TAGS.values())

_BATCH = struct.Struct(">BH")  # format version, source partition
_VERSION = 2  # 2: the model's p in every item
_ITEM = struct.Struct(">qBdI")  # source offset, owner tag, model p (NaN: none), Avro length
# A batch is cut at 256 KiB, far below the producer's 1 MB message limit (an outcome is
# ~150-300 bytes of Avro: ~1,000 outcomes per message).
MAX_BATCH_BYTES = 256 * 1024


class BatchError(ValueError):
    """An owner-updates message that is not a batch of this format."""


def owner_partition(key: str, partitions: int) -> int:
    """The owner-updates partition that owns a route / BIN / merchant key (crc32: C-fast and
    stable across processes and versions, unlike hash()). Backfill places state with it too."""
    return zlib.crc32(key.encode()) % partitions


class DeltaBatcher:
    """Outcomes staged per (owner partition, source partition) until the next checkpoint."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._pending: dict[tuple[int, int], list[bytes]] = {}
        self._size: dict[tuple[int, int], int] = {}
        self._full: list[tuple[int, bytes]] = []

    def add(self, rec: dict[str, Any], raw: bytes, source: int, offset: int,
            model_p: float | None = None) -> None:  # fmt: skip
        n = self.partitions
        p = math.nan if model_p is None else model_p
        for tag, field in _FIELDS:
            slot = (zlib.crc32(rec[field].encode()) % n, source)
            item = _ITEM.pack(offset, tag, p, len(raw)) + raw
            items = self._pending.get(slot)
            if items is None:
                items = self._pending[slot] = []
                self._size[slot] = _BATCH.size
            items.append(item)
            self._size[slot] += len(item)
            if self._size[slot] >= MAX_BATCH_BYTES:
                self._full.append((slot[0], _batch(slot[1], self._pending.pop(slot))))
                del self._size[slot]

    @property
    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values()) + len(self._full)

    def drain(self) -> list[tuple[int, bytes]]:
        """Every staged batch as (owner partition, message value); the stage is emptied."""
        out = self._full
        out += [(q, _batch(src, items)) for (q, src), items in self._pending.items()]
        self._full, self._pending, self._size = [], {}, {}
        return out


def _batch(source: int, items: list[bytes]) -> bytes:
    return _BATCH.pack(_VERSION, source) + b"".join(items)


Item = tuple[int, str, float, bytes]  # source offset, owner kind, model p (NaN: none), Avro


def read_batch(value: bytes) -> tuple[int, Iterator[Item]]:
    """(source partition, items as (source offset, owner kind, model p, Avro bytes)); a
    malformed header raises BatchError here, a malformed item when the iterator reaches it."""
    if len(value) < _BATCH.size:
        raise BatchError(f"{len(value)} bytes: shorter than a batch header")
    version, source = _BATCH.unpack_from(value)
    if version != _VERSION:
        raise BatchError(f"batch format {version}, expected {_VERSION}")
    return source, _items(value)


def _items(value: bytes) -> Iterator[Item]:
    i, n = _BATCH.size, len(value)
    while i < n:
        if i + _ITEM.size > n:
            raise BatchError(f"truncated item header at byte {i}")
        offset, tag, p, length = _ITEM.unpack_from(value, i)
        i += _ITEM.size
        owner = _BY_TAG.get(tag)
        if owner is None:
            raise BatchError(f"unknown owner tag {bytes([tag])!r} at byte {i - _ITEM.size}")
        if i + length > n:
            raise BatchError(f"truncated item at byte {i}: {length} bytes announced")
        yield offset, owner, p, value[i : i + length]
        i += length
