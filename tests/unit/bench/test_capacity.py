"""The capacity benchmark's pure parts: rates, ratios, the report, pacing and percentiles."""

from __future__ import annotations

import math

from app.bench.capacity import (
    Figure,
    LatencyRow,
    drained,
    events_in,
    ratios,
    render_report,
    span_seconds,
)
from app.bench.paced import LatencyPoint, due_now, paced_rates, percentiles_ms

FIGURES = [
    Figure("python", "python loop", 20000, 0.5),
    Figure("faust", "bare Faust", 20000, 10.0),
    Figure("sr", "worker SR", 20000, 12.5),
    Figure("closed", "worker closed", 20000, 40.0, unit="payments/s", note="fed on decision"),
]
META = {
    "requests": 20000,
    "bootstrap": "127.0.0.1:1",
    "cpus": 2,
    "load": [1.0, 2.5],
    "command": "python -m x",
}


def test_span_counts_n_intervals_for_n_events():
    # 5 events 1 ms apart: 4 ms first to last, 5 intervals -> 1000 events/s
    assert span_seconds([10, 11, 12, 13, 14]) == 0.005
    assert 5 / span_seconds([14, 10, 12, 11, 13]) == 1000.0
    assert math.isnan(span_seconds([3]))


def test_ratios_are_to_the_bare_faust_figure():
    r = ratios(FIGURES)
    assert r == {"python": 20.0, "faust": 1.0, "sr": 0.8, "closed": 0.25}
    assert all(math.isnan(v) for v in ratios(FIGURES[:1]).values())


def test_report_has_one_row_per_figure_and_the_latency_table():
    pt = LatencyPoint(offered=125, sent=2500, decided=2500, p50_ms=12.5, p99_ms=40.25)
    echo = LatencyPoint(offered=125, sent=2500, decided=2500, p50_ms=1.5, p99_ms=3.0)
    text = render_report(FIGURES, [LatencyRow(0.25, pt, echo)], META)
    lines = text.splitlines()
    assert "| python loop | 40,000 decisions/s | 20.00 |  |" in lines
    assert "| bare Faust | 2,000 decisions/s | 1.00 |  |" in lines
    assert "| worker closed | 500 payments/s | 0.25 | fed on decision |" in lines
    assert "| 25% | 125 | 2500/2500 | 12.50 | 40.25 | 1.50 | 3.00 |" in lines
    assert "`python -m x`" in text and "1.0 at start, 2.5 at end" in text


def test_paced_rates_are_shares_of_capacity():
    assert paced_rates(453.0) == [113.0, 226.0, 340.0]
    assert paced_rates(2.0) == [1.0, 1.0, 2.0]  # never below one request per second


def test_due_now_keeps_the_schedule_without_bursting_ahead():
    assert due_now(0.0, 100, 0) == 1  # the first request at t = 0
    assert due_now(0.0, 100, 1) == 0
    assert due_now(0.5, 100, 1) == 50  # behind by half a second: catch up at once
    assert due_now(0.5, 100, 60) == 0  # ahead: wait, never negative
    sent = 0
    for ms in range(1000):  # one second at 200/s polled every ms sends exactly 200
        sent += due_now(ms / 1000, 200, sent)
    assert sent == 200


def test_percentiles_in_ms():
    assert percentiles_ms([1000.0 * i for i in range(1, 101)]) == [50.5, 99.01]
    assert all(math.isnan(v) for v in percentiles_ms([]))


def test_drained_needs_every_counted_topic_at_its_end():
    text = (
        "# HELP authpilot_events_in_total Messages consumed, by topic\n"
        'authpilot_events_in_total{topic="t.requests"} 10.0\n'
        'authpilot_events_in_total{topic="t.outcomes"} 10.0\n'
        'authpilot_events_in_total{topic="app-owner-updates"} 29.0\n'
        'authpilot_events_in_created{topic="t.requests"} 1.7e9\n'
    )
    counts = events_in(text)
    assert counts == {"t.requests": 10.0, "t.outcomes": 10.0, "app-owner-updates": 29.0}
    ends = {"t.requests": 10, "t.outcomes": 10, "app-owner-updates": 30}
    assert not drained(counts, ends, "t.outcomes", 10)
    assert drained(counts, dict(ends, **{"app-owner-updates": 29}), "t.outcomes", 10)
    assert not drained(counts, dict(ends, **{"app-owner-updates": 29}), "t.outcomes", 11)


def test_without_a_broker_it_says_so_and_exits_instead_of_retrying(monkeypatch, tmp_path, capsys):
    from app.bench import capacity

    monkeypatch.setenv("AUTHPILOT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert capacity.main(["--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no Kafka broker at 127.0.0.1:1" in err and "kafka start" in err
