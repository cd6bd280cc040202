"""A hindsight ceiling for retries: how much declined value any retry policy could recover.

For every payment whose first attempt was declined, look into the future the simulator holds:
try one retry at each candidate time within the horizon (minutes, hours, then every day) on
each candidate route, with the very draws attempt 2 of that payment gets in the closed loop
(common random numbers), and keep it as recoverable if any compliant (time, route) approves.
No causal policy can recover a payment this clairvoyant retrier cannot reach with its draws,
so the ceiling says how much of the gap to a perfect retrier a target leaves: a target above
it is out of reach in that world, whatever the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.contracts.vocab import HOUR_MS
from app.retry.rules import Counters, NetworkRules
from app.sim.truth import draw_outcome
from app.sim.world import World

CANDIDATE_HOURS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 6.0, 12.0) + tuple(
    24.0 * d for d in range(1, 31)
)


def hindsight_recoverable(world: World, payments: list[dict[str, Any]],
                          first_declines: dict[int, dict[str, Any]], rules: NetworkRules,
                          seed: int, hours: tuple[float, ...] = CANDIDATE_HOURS,
                          only_mit: bool = True) -> np.ndarray:  # fmt: skip
    """Per payment: True when one clairvoyant retry of its declined first attempt approves."""
    ok = np.zeros(len(payments), bool)
    for i, out in first_declines.items():
        req = payments[i]
        if only_mit and req["initiator"] != "MIT":
            continue
        verdict = rules.check(out, Counters())
        if not verdict.allowed:
            continue
        t0 = out["event_time"]
        for h in hours:
            t = max(t0 + int(h * HOUR_MS), verdict.not_before_ms)
            retry = dict(req, attempt=2, event_time=t,
                         three_ds=bool(req["three_ds"] or verdict.require_3ds))  # fmt: skip
            draws = (
                draw_outcome(world, retry, c["route_id"], t, np.random.default_rng([seed, i, 2]))
                for c in req["candidates"]
            )
            if any(d["approved"] for d in draws):
                ok[i] = True
                break
    return ok
