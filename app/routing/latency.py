"""Recent response latency per route, for latency-aware routing.

An exponentially weighted mean of each route's answer time (latency_ms of its outcomes), kept
by the worker that sees the outcomes (every worker sees every route: outcomes are keyed by
card). Slow routes cost checkout conversion and hit gateway timeouts, so EV routing charges a
route for the part of its recent latency above the budget.

Recent in time as well as in outcomes: the older mean also fades with a half-life of event time,
so a route that was slow and is then avoided (a demoted route seeing a probe every few minutes)
is judged on its latest answers, not held at its outage latency by the few outcomes it gets.
"""

from __future__ import annotations


class RouteLatency:
    """EWMA of latency per route; `alpha` = weight of the newest outcome when outcomes are
    dense, more when the previous one is older than a few `half_life_ms`."""

    def __init__(self, alpha: float = 0.02, half_life_ms: float = 5 * 60_000.0) -> None:
        self.alpha = alpha
        self.half_life_ms = half_life_ms
        self.mean: dict[str, float] = {}
        self._at: dict[str, int] = {}

    def observe(self, route_id: str, latency_ms: float, event_time: int | None = None) -> None:
        m = self.mean.get(route_id)
        if m is None:
            self.mean[route_id] = latency_ms
        else:
            keep = 1.0 - self.alpha
            last = self._at.get(route_id)
            if event_time is not None and last is not None and event_time > last:
                keep *= 2.0 ** (-(event_time - last) / self.half_life_ms)
            self.mean[route_id] = latency_ms + keep * (m - latency_ms)
        if event_time is not None:
            self._at[route_id] = max(event_time, self._at.get(route_id, event_time))

    def get(self, route_id: str) -> float | None:
        return self.mean.get(route_id)


def latency_penalty(latency_ms: float | None, budget_ms: float, share: float) -> float:
    """Share of an approval's value charged to a route for its latency over the budget: 0 within
    budget, rising linearly to `share` at twice the budget and capped there."""
    if latency_ms is None or latency_ms <= budget_ms or budget_ms <= 0:
        return 0.0
    return share * min(1.0, (latency_ms - budget_ms) / budget_ms)
