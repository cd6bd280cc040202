"""The shared last step of every routing policy: pick the best eligible route, explore a little,
and log the exact propensity of the choice.

The exploration draw is a hash of the request id, not a process RNG: the same request gets the
same decision on any worker, after a restart or in a replay, and off-policy estimators get the
true probability of the logged action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Sequence
from typing import Any


def uniform_draws(request_id: str) -> tuple[float, float]:
    """Two independent uniforms in [0, 1) from the request id (deterministic exploration)."""
    d = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(d[:4], "big") / 2**32, int.from_bytes(d[4:], "big") / 2**32


def when_all_eliminated(route_ids: Sequence[str], demoted: Container[str]) -> list[int]:
    """The eligible candidates when every one is out: those not demoted (a low estimate is a
    soft reason, a demotion a hard one: the drift monitor alone sends a demoted route traffic,
    as its probe), all of them when every candidate is demoted."""
    kept = [i for i, r in enumerate(route_ids) if r not in demoted]
    return kept or list(range(len(route_ids)))


def choose(
    request_id: str,
    scores: Sequence[float],
    fees: Sequence[int],
    eligible: Sequence[int],
    explore: float,
    explore_pool: Sequence[int] | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[int, float, bool]:
    """(chosen index, propensity, explored). Best = highest score among the eligible, ties to
    the cheaper route, then to candidate order. One uniform draw picks the tier:
    - with probability `explore` a uniform pick among `explore_pool` (default: the eligible);
    - otherwise the best, or, when the caller gives `weights` (a distribution over the
      candidates, zero off the eligible: expected_value's posterior win shares), a pick by them.
    The propensity is the exact sum of the ways to the choice; explored = the uniform tier drew
    it, or the weights picked another than the best."""
    best = max(eligible, key=lambda i: (scores[i], -fees[i], -i))
    pool = eligible if explore_pool is None else explore_pool
    m = len(pool)
    if weights is None or weights[best] >= 1.0:
        weights = None
    if m == 1 and pool[0] == best and weights is None:
        return best, 1.0, False
    u_explore, u_pick = uniform_draws(request_id)
    if u_explore < explore:
        chosen, uniform = pool[min(int(u_pick * m), m - 1)], True
    elif weights is None:
        chosen, uniform = best, False
    else:
        chosen, acc, uniform = best, 0.0, False
        for i, w in enumerate(weights):
            acc += w
            if w > 0.0 and u_pick < acc:
                chosen = i
                break
    w_chosen = (chosen == best) * 1.0 if weights is None else weights[chosen]
    propensity = (1.0 - explore) * w_chosen + explore / m * (chosen in pool)
    return chosen, propensity, uniform or chosen != best


def decision(
    req: dict[str, Any],
    chosen: int,
    scores: list[dict[str, Any]],
    propensity: float,
    policy: str,
    model_version: str | None,
    reasons: list[str],
) -> dict[str, Any]:
    """The RoutingDecision body every policy returns (timing and arm are the agent's)."""
    return {
        "request_id": req["request_id"],
        "payment_id": req["payment_id"],
        "attempt": req["attempt"],
        "chosen_route": req["candidates"][chosen]["route_id"],
        "scores": scores,
        "propensity": propensity,
        "policy": policy,
        "model_version": model_version,
        "reason_codes": reasons,
    }


def fixed_route_decision(req: dict[str, Any], chosen: int, policy: str,
                         reasons: list[str]) -> dict[str, Any]:  # fmt: skip
    """The decision of a policy that picks one route outright (no scores, no exploration:
    propensity 1); score 1 marks the chosen candidate."""
    scores = [{"route_id": c["route_id"], "p_approve": float("nan"), "score": float(i == chosen),
               "fee_minor": c["fee_minor"], "samples": 0, "eliminated": False}
              for i, c in enumerate(req["candidates"])]  # fmt: skip
    return decision(req, chosen, scores, 1.0, policy, None, reasons)
