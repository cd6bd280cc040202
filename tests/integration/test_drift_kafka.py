"""Drift monitoring through the real broker: an acquirer outage is detected, the route demoted
and traffic moves away; shadow challengers and experiment arms reach their topics."""

from __future__ import annotations

import pytest

from app.contracts.codec import Codec
from app.contracts.vocab import DAY_MS
from app.harness.loadgen import LoadGenerator
from app.harness.simulated import SimulatedTraffic
from tests.kafka_io import read_topic

pytestmark = pytest.mark.kafka


def test_acquirer_outage_is_detected_and_traffic_moves_away(worker, settings_for):
    s = settings_for
    # 600x simulated time from 2.4 h before the outage: ~14 s of healthy traffic for the
    # detectors' baselines, then the outage (12 simulated hours = 72 s of wall time).
    world = SimulatedTraffic("acquirer_outage", seed=3, speedup=600, start_day=10.15)
    ev = world.world.events[0]
    route = ev.route_id
    start = world.world.start_ms + int(ev.start_day * DAY_MS)
    end = world.world.start_ms + int(ev.end_day * DAY_MS)
    seen: list[tuple[int, str]] = []  # (simulated decision time, chosen route)
    gen = LoadGenerator(s, world, rate=100, duration=45,
                        on_decision=lambda d: seen.append((world.sim_time(d["decided_at"]),
                                                           d["chosen_route"])))  # fmt: skip
    stats = gen.run(show=False)
    assert stats.decided > 3000, stats

    codec = Codec(s)
    serde = codec.serde("Alert")
    alerts = [serde.decode(m.value()) for m in read_topic(s, s.topic_alerts, 1, timeout=30)]
    demoted = [a for a in alerts if a["kind"] == "ROUTE_DEMOTED"]
    assert [a["subject"] for a in demoted] == [route], alerts  # the failing route, only it
    detected = demoted[0]["event_time"]
    assert start <= detected < end, (start, detected, end)

    before = [r for t, r in seen if t < start]
    assert before.count(route) / len(before) > 0.05, "the route carried traffic before"
    exposed = sum(1 for t, r in seen if r == route and start <= t < detected)
    print(f"outage detected after {exposed} decisions on {route}, "
          f"{(detected - start) / 60000:.1f} simulated minutes")  # fmt: skip
    assert exposed <= 400, exposed  # "within a few hundred requests on that route"
    # after the demotion only exploration reaches the route (probe traffic)
    after = [r for t, r in seen if detected + 60_000 <= t < end]
    assert len(after) > 500
    share = after.count(route) / len(after)
    assert share < 0.05, share
    text = worker.metrics()
    assert f'authpilot_route_demoted{{route="{route}"}} 1.0' in text
    assert 'authpilot_alerts_total{kind="ROUTE_DEMOTED"}' in text
