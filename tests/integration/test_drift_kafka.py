"""Drift monitoring through the real broker: an acquirer outage is detected within 20 attempts on
the route, traffic moves away, the route is probed and restored within 30 simulated minutes of
healing."""

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
    # 600x simulated time from 2.4 h before the outage: ~14 s of healthy traffic, the outage
    # (12 simulated hours = 72 s of wall time), then ~1.7 simulated hours healed.
    world = SimulatedTraffic("acquirer_outage", seed=3, speedup=600, start_day=10.15)
    ev = world.world.events[0]
    route = ev.route_id
    start = world.world.start_ms + int(ev.start_day * DAY_MS)
    end = world.world.start_ms + int(ev.end_day * DAY_MS)
    seen: list[tuple[int, str]] = []  # (simulated decision time, chosen route)
    probes: set[int] = set()  # indexes in `seen` of the decisions that were probes
    knew: list[int] = []  # indexes of the decisions made with the route demoted

    def on_decision(d):  # type: ignore[no-untyped-def]
        if any(c.startswith("PROBE:") for c in d["reason_codes"]):
            probes.add(len(seen))
        if f"DEMOTED:{route}" in d["reason_codes"]:
            knew.append(len(seen))
        seen.append((world.sim_time(d["decided_at"]), d["chosen_route"]))

    gen = LoadGenerator(s, world, rate=100, duration=97, on_decision=on_decision)
    stats = gen.run(show=False)
    assert stats.decided > 7000, stats

    codec = Codec(s)
    serde = codec.serde("Alert")
    alerts = [serde.decode(m.value()) for m in read_topic(s, s.topic_alerts, 1, timeout=30)]
    demoted = [a for a in alerts if a["kind"] == "ROUTE_DEMOTED"]
    assert {a["subject"] for a in demoted} == {route}, alerts  # the failing route, only it
    detected = demoted[0]["event_time"]
    assert start <= detected < end, (start, detected, end)
    restored = [a for a in alerts if a["kind"] == "ROUTE_RESTORED" and a["event_time"] >= end]
    assert restored and restored[0]["subject"] == route, alerts
    back_min = (restored[0]["event_time"] - end) / 60000
    # The harness draws an outcome at the simulated time it reaches the generator, so every
    # outcome, the restoring probe's too, is stamped the loop's wall-clock lag x 600 late: 2 s
    # of produce -> decision lag on a loaded CI machine is 20 simulated minutes (measured raw
    # restores 5.7-37 min across suites). The router's restore is what the target judges: the
    # lag at that moment (median produce -> decision latency of the decisions around it, x 600)
    # is subtracted and both figures are printed.
    lat = stats.latencies_us
    assert len(lat) == len(seen)  # one latency per decision, in decision order
    near = [lat[i] for i, (t, _) in enumerate(seen)
            if restored[0]["event_time"] - 600_000 <= t <= restored[0]["event_time"]]  # fmt: skip
    lag_min = sorted(near)[len(near) // 2] / 1e6 * 600 / 60 if near else 0.0
    print(f"restored {back_min:.1f} simulated minutes after the route healed, of which "
          f"{lag_min:.1f} the loop's lag: {back_min - lag_min:.1f} min")  # fmt: skip
    assert back_min - lag_min <= 30, (back_min, lag_min)

    before = [r for t, r in seen if t < start]
    # a precondition, not a target: the route carried traffic before (measured 4.3-25%)
    assert before.count(route) / len(before) > 0.02, "the route carried traffic before"
    # Attempts on the route, as the target counts them: the outcomes the detector had seen
    # on it from the outage's start up to the one that tripped it (their event times are the
    # simulated times they were drawn). Decisions made before the router knew also include
    # those still in flight: the loop's lag x rate x the route's share, ~10 at 1 s of lag,
    # which a detector cannot shorten (a loaded CI machine once made it 29).
    outcome_serde = codec.serde("AuthorizationOutcome")
    outcomes = [outcome_serde.decode(m.value())
                for m in read_topic(s, s.topic_outcomes, stats.outcomes, timeout=60)]  # fmt: skip
    assert len(outcomes) >= stats.outcomes, (len(outcomes), stats.outcomes)
    attempts = sum(1 for o in outcomes
                   if o["route_id"] == route and start <= o["event_time"] <= detected)  # fmt: skip
    exposed = sum(1 for t, r in seen if r == route and start <= t < detected)
    print(demoted[0]["message"])
    print(f"outage detected after {attempts} outcomes on {route} "
          f"({exposed} decisions on it before the alert's time, in-flight ones included), "
          f"{(detected - start) / 60000:.1f} simulated minutes")  # fmt: skip
    assert 0 < attempts <= 20, attempts  # issue 16: demoted within 20 attempts on the route
    # After the demotion only probes reach the route, on their backed-off schedule: measured 12
    # an hour on this route failing 60%, 120 if the schedule never backed off. "After" starts at
    # the first decision the router made knowing it (DEMOTED in its reasons), not at the alert's
    # event time: the demoting outcome reaches the worker the loop's lag later, and decisions
    # made meanwhile still send the route traffic (CI failed this with a 60-simulated-second
    # grace, 0.1 s of wall time at 600x).
    first = min(i for i in knew if seen[i][0] >= start)
    print(f"the router knew {(seen[first][0] - detected) / 1000:.0f} simulated s after the alert")
    after = [i for i in range(first, len(seen)) if seen[i][0] < end]
    assert len(after) > 500
    on_route = [i for i in after if seen[i][1] == route]
    stray = [seen[i][0] - start for i in on_route if i not in probes]
    flaps = [(a["kind"], a["event_time"] - start) for a in alerts if a["subject"] == route]
    assert not stray, f"a demoted route got traffic that was no probe: {stray[:5]}; {flaps}"
    hours = (end - seen[first][0]) / 3_600_000
    print(f"{len(on_route)} probes in {hours:.1f} simulated hours of the outage, "
          f"{len(on_route) / len(after):.1%} of the traffic")  # fmt: skip
    assert len(on_route) / hours <= 25, (len(on_route), hours)
    text = worker.metrics()
    assert 'authpilot_alerts_total{kind="ROUTE_DEMOTED"}' in text
    assert 'authpilot_alerts_total{kind="ROUTE_RESTORED"}' in text
