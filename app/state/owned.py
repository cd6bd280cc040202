"""Owned state: the one worker that owns a key keeps it in its table and publishes it.

Keys aggregated over all traffic (route, BIN, merchant statistics) are updated by exactly one
owner, the partition their repartitioned updates land on. The owner writes every update to its
table (RocksDB + changelog: the durable state, restored exactly after a restart) and publishes
the value to a GlobalTable every worker reads, throttled: each publish is a changelog message
every worker consumes, and publishing the six feature rings of every outcome measured as the
worker's bottleneck (Faust's changelog buffer filled, commits overran).

A key is published on its first update since this worker took ownership, on every update while
it is young (the codec's `young`: a success-rate key with few samples), and on every N-th update
after that (N = AUTHPILOT_STATE_PUBLISH_EVERY). Readers on other workers see a key at most N-1
updates late; a crash loses nothing of the owner's table, and the published copy of a key that
was not published since its last update stays that stale until the key's next update.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping


def _never(value: bytes) -> bool:
    return False


def _same(value: bytes) -> bytes:
    return value


class OwnedState:
    """A `Store` over the owner's table that also publishes to the shared GlobalTable.

    `young(value)` says a key's readers should see every update; `published_as(value)` is what
    the GlobalTable holds (the value itself, or a compact snapshot of it)."""

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        published: MutableMapping[bytes, bytes],
        every: int,
        young: Callable[[bytes], bool] = _never,
        published_as: Callable[[bytes], bytes] = _same,
    ) -> None:
        self._table = table
        self._published = published
        self._every = max(1, every)
        self._young = young
        self._published_as = published_as
        self._since: dict[bytes, int] = {}  # updates of a key since it was last published

    def get(self, key: bytes) -> bytes | None:
        return self._table.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value
        n = self._since.get(key)
        if n is None or n + 1 >= self._every or self._young(value):
            self._published[key] = self._published_as(value)
            self._since[key] = 0
        else:
            self._since[key] = n + 1

    def forget(self) -> None:
        """Drop the staged publish counts (on revoke: another worker may own these keys next,
        and if they come back, their first update publishes again)."""
        self._since.clear()
