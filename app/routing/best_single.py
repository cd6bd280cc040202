"""Best single route: what most merchants do today, one acquirer per merchant (the one with the
best approval rate in their history), no per-transaction choice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.routing.choice import fixed_route_decision

POLICY_NAME = "best_single_route"


def best_single_routes(merchant: Sequence[str], route: Sequence[str],
                       approved: Sequence[bool]) -> dict[str, str]:  # fmt: skip
    """Each merchant's route with the highest approval rate in a history (ties: more traffic)."""
    stats: dict[tuple[str, str], list[int]] = {}
    for m, r, a in zip(merchant, route, approved, strict=True):
        s = stats.setdefault((m, r), [0, 0])
        s[0] += 1
        s[1] += bool(a)
    best: dict[str, tuple[float, int, str]] = {}
    for (m, r), (n, ok) in stats.items():
        key = (ok / n, n, r)
        if m not in best or key > best[m]:
            best[m] = key
    return {m: v[2] for m, v in best.items()}


def best_single_decide(req: dict[str, Any], routes: Mapping[str, str]) -> dict[str, Any]:
    """The merchant's one route; its first candidate when that route is not offered (e.g.
    excluded after a route-side failure), so a cascade still has somewhere to go."""
    ids = [c["route_id"] for c in req["candidates"]]
    want = routes.get(req["merchant_id"])
    if want in ids:
        return fixed_route_decision(req, ids.index(want), POLICY_NAME, [f"MERCHANT_ROUTE:{want}"])
    return fixed_route_decision(req, 0, POLICY_NAME, [f"MERCHANT_ROUTE_UNAVAILABLE:{want}"])
