"""The gateway's side of the closed loop: what a traffic source is, and the ones we ship.

A traffic source produces AuthorizationRequests and draws the outcome of the route a decision
chose. `SampleTraffic` (three routes, a fixed route x issuer table) is the smoke-test source;
`SimulatedTraffic` drives a simulator scenario (app.sim) on a sped-up clock.
"""

from __future__ import annotations

from typing import Any, Protocol


class TrafficSource(Protocol):
    def next_request(self, now_ms: int) -> dict[str, Any]: ...

    def outcome(self, request: dict[str, Any], route_id: str, now_ms: int) -> dict[str, Any]: ...


def traffic_source(name: str, seed: int, start_day: float = 0.0) -> TrafficSource:
    """`sample`, or a simulator scenario by name (app/data/scenarios)."""
    if name == "sample":
        from app.harness.sample import SampleTraffic

        return SampleTraffic(seed)
    from app.harness.simulated import SimulatedTraffic
    from app.sim.scenarios import list_scenarios

    if name not in list_scenarios():
        raise ValueError(f"unknown traffic {name!r}: sample or one of {list_scenarios()}")
    return SimulatedTraffic(name, seed, start_day=start_day)
