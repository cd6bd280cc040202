"""Success-rate routing: the mechanism of the open-source decision engines, reimplemented.

Per candidate route, the success rate over the last B outcomes at the most specific key level
that has at least `min_samples` outcomes (route x BIN, then route x network x issuer country,
then the route overall, then a prior). Routes under an elimination threshold are skipped unless
every route is; a small share of traffic explores uniformly over the eligible routes so every
decision has a known propensity for off-policy evaluation. Ties go to the cheaper route.

The exploration draw is a hash of the request id, not a process RNG: the same request gets the
same decision on any worker, after a restart or in a replay.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from app.routing.choice import choose, decision, when_all_eliminated
from app.state.windows.count import LEVELS, Snapshot, stat_keys

POLICY_NAME = "success_rate"


@dataclass(frozen=True)
class SRParams:
    """Tunables; defaults in app.config.Settings with the reasons."""

    min_samples: int = 20
    prior: float = 0.8
    explore: float = 0.05
    eliminate_below: float = 0.2

    @classmethod
    def from_settings(cls, s: Any) -> SRParams:
        return cls(s.sr_min_samples, s.sr_prior, s.sr_explore, s.sr_eliminate_below)


def estimate(
    route: str, req: dict[str, Any], lookup: Callable[[str], Snapshot | None], p: SRParams
) -> tuple[float, int, str]:
    """(success rate, samples behind it, level) for one route and request."""
    keys = stat_keys(route, req["bin"], req["network"], req["issuer_country"])
    for level, key in zip(LEVELS, keys, strict=True):
        snap = lookup(key)
        if snap is not None and snap.samples >= p.min_samples:
            return snap.successes / snap.samples, snap.samples, level
    return p.prior, 0, "prior"


def decide(
    req: dict[str, Any],
    lookup: Callable[[str], Snapshot | None],
    p: SRParams,
    demoted: Container[str] = frozenset(),
) -> dict[str, Any]:
    """A RoutingDecision body (without timing and arm) for one request; routes in `demoted`
    are eliminated (the dispatcher probes them, app.routing.dispatch)."""
    cands = req["candidates"]
    scores: list[dict[str, Any]] = []
    reasons: list[str] = []
    eligible: list[int] = []
    for i, c in enumerate(cands):
        sr, n, level = estimate(c["route_id"], req, lookup, p)
        out = (n > 0 and sr < p.eliminate_below) or c["route_id"] in demoted
        scores.append(
            {
                "route_id": c["route_id"],
                "p_approve": sr,
                "score": sr,
                "fee_minor": c["fee_minor"],
                "samples": n,
                "eliminated": out,
            }
        )
        reasons.append(f"LEVEL:{c['route_id']}={level}")
        if c["route_id"] in demoted:
            reasons.append(f"DEMOTED:{c['route_id']}")
        elif out:
            reasons.append(f"ELIMINATED:{c['route_id']}")
        else:
            eligible.append(i)
    if not eligible:
        reasons.append("ALL_ELIMINATED")
        eligible = when_all_eliminated([c["route_id"] for c in cands], demoted)
        for i in eligible:
            scores[i]["eliminated"] = False
    chosen, propensity, explored = choose(
        req["request_id"],
        [sc["score"] for sc in scores],
        [sc["fee_minor"] for sc in scores],
        eligible,
        p.explore,
    )
    reasons.insert(0, "EXPLORE" if explored else "SR_BEST")
    return decision(req, chosen, scores, propensity, POLICY_NAME, None, reasons)
