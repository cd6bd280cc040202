"""Published state, read: a GlobalTable behind a bounded in-memory cache kept current by its
changelog.

The score agent reads up to 23 published keys per request (success-rate levels and feature
rings per candidate route). A Faust GlobalTable read over RocksDB first asks every partition's
database whether the key exists, then reads it: a py-spy profile of the closed loop had 6% of
the worker in those lookups. Every changelog message the table applies (another owner's
checkpoint, or this worker's own publish) passes through `on_changelog_event`, which updates the
cache, so a cached value is never older than the table's own; misses are cached too (a key
nobody published yet, such as a new BIN, is the common miss) and corrected the same way.
"""

from __future__ import annotations

from typing import Any

from app.state.checkpoint import Writer

_ABSENT = object()


class PublishedReader:
    """`get` over a GlobalTable, cached; `on_changelog_event` is the table's changelog hook
    (pass it as the GlobalTable's on_changelog_event) and `writer` wraps a local publish."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._table: Any = None
        self._cache: dict[bytes, Any] = {}

    def attach(self, table: Any) -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        v = self._cache.get(key, _ABSENT)
        if v is _ABSENT:
            v = self._table.get(key)
            self._remember(key, v)
        return v

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise TypeError("published state is written by its owner's checkpoint, not by readers")

    def _remember(self, key: bytes, value: bytes | None) -> None:
        cache = self._cache
        if len(cache) >= self.capacity and key not in cache:
            # Evict the oldest insertion (dicts keep order): cheap, and a published key that
            # is read is re-read within a request or two, so recency matters little here.
            del cache[next(iter(cache))]
        cache[key] = value

    async def on_changelog_event(self, event: Any) -> None:
        key = event.key
        if key in self._cache:
            self._cache[key] = event.value

    def writer(self, write: Writer) -> Writer:
        """A publish that also updates the cache (the changelog brings it back later too)."""

        def publish(partition: int, key: bytes, value: bytes) -> None:
            write(partition, key, value)
            if key in self._cache:
                self._cache[key] = value

        return publish

    def forget(self) -> None:
        """Drop the cache (after a rebalance the table may have been restored anew)."""
        self._cache.clear()
