"""The closed-loop traffic source: what it sends must meet the ingest contract, because the
worker's exported history (`authpilot export`) is trained on."""

from __future__ import annotations

import time

from app.contracts.validate import validate_outcome, validate_request
from app.harness.simulated import SimulatedTraffic


def test_an_outcome_names_its_request_time_even_when_answered_later():
    src = SimulatedTraffic("steady", seed=3, speedup=400)
    now = int(time.time() * 1000)
    req = src.next_request(now)
    out = src.outcome(req, req["candidates"][0]["route_id"], now + 2_000)  # 800 s simulated
    assert out["request_time"] == req["event_time"] < out["event_time"]
    assert out["event_time"] - req["event_time"] >= 2_000 * 400  # answered at decision time
    assert out["request_id"] == req["request_id"]
    validate_request(req)
    validate_outcome(out)
