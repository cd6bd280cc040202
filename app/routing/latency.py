"""Recent response latency per route, for latency-aware routing.

An exponentially weighted mean of each route's answer time (latency_ms of its outcomes), kept
by the worker that sees the outcomes (every worker sees every route: outcomes are keyed by
card). Slow routes cost checkout conversion and hit gateway timeouts, so EV routing charges a
route for the part of its recent latency above the budget.
"""

from __future__ import annotations


class RouteLatency:
    """EWMA of latency per route; `alpha` = weight of the newest outcome."""

    def __init__(self, alpha: float = 0.02) -> None:
        self.alpha = alpha
        self.mean: dict[str, float] = {}

    def observe(self, route_id: str, latency_ms: float) -> None:
        m = self.mean.get(route_id)
        self.mean[route_id] = latency_ms if m is None else m + self.alpha * (latency_ms - m)

    def get(self, route_id: str) -> float | None:
        return self.mean.get(route_id)


def latency_penalty(latency_ms: float | None, budget_ms: float, share: float) -> float:
    """Share of an approval's value charged to a route for its latency over the budget: 0 within
    budget, rising linearly to `share` at twice the budget and capped there."""
    if latency_ms is None or latency_ms <= budget_ms or budget_ms <= 0:
        return 0.0
    return share * min(1.0, (latency_ms - budget_ms) / budget_ms)
