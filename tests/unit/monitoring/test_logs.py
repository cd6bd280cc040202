"""Repeated log records are cut to one per kind per window, with the count dropped."""

from __future__ import annotations

import logging

from app.monitoring.logs import RepeatFilter


def _rec(msg: str, *args: object, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_are_dropped_then_counted() -> None:
    f = RepeatFilter(window_s=0.05)
    assert f.filter(_rec("Unable connect to node %s", 1))
    assert not f.filter(_rec("Unable connect to node %s", 1))
    assert not f.filter(_rec("Unable connect to node %s", 2))  # same template
    assert f.filter(_rec("another message"))  # another kind passes
    import time

    time.sleep(0.06)
    r = _rec("Unable connect to node %s", 1)
    assert f.filter(r) and "[2 more like this" in r.getMessage()


def test_librdkafka_lines_are_told_apart_by_their_text() -> None:
    f = RepeatFilter(window_s=10)
    assert f.filter(_rec("%s %s", "FAIL", "broker a down", name="librdkafka"))
    assert f.filter(_rec("%s %s", "FAIL", "broker b down", name="librdkafka"))
    assert not f.filter(_rec("%s %s", "FAIL", "broker a down", name="librdkafka"))
