"""The published-state reader: cached reads that the changelog keeps current."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.state.published import PublishedReader


class Table(dict):
    reads = 0

    def get(self, key, default=None):
        Table.reads += 1
        return super().get(key, default)


def _event(key, value):
    return SimpleNamespace(key=key, value=value)


def test_reads_are_cached_and_kept_current_by_the_changelog():
    t = Table({b"a": b"1"})
    r = PublishedReader(capacity=10)
    r.attach(t)
    Table.reads = 0
    assert r.get(b"a") == b"1" and r.get(b"a") == b"1" and Table.reads == 1
    assert r.get(b"new") is None and r.get(b"new") is None and Table.reads == 2  # misses too
    t[b"new"] = b"2"  # another owner publishes: the table applies the changelog message
    asyncio.run(r.on_changelog_event(_event(b"new", b"2")))
    assert r.get(b"new") == b"2" and Table.reads == 2
    published = []
    write = r.writer(lambda p, k, v: published.append((p, k, v)))
    write(3, b"a", b"9")  # this worker's own publish
    assert r.get(b"a") == b"9" and published == [(3, b"a", b"9")]


def test_the_cache_is_bounded():
    t = Table({bytes([i]): b"x" for i in range(50)})
    r = PublishedReader(capacity=8)
    r.attach(t)
    for i in range(50):
        assert r.get(bytes([i])) == b"x"
    assert len(r._cache) == 8
    assert r.get(bytes([0])) == b"x"  # evicted keys are read again from the table


def test_readers_do_not_write():
    with pytest.raises(TypeError):
        PublishedReader(1)[b"k"] = b"v"
