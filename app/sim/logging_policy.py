"""The randomized policy that routed the logged history, with its propensities.

Each attempt goes to the merchant's default route with probability 1 - epsilon, otherwise to a
route drawn uniformly from the merchant's candidates (the default included). Every candidate so
has propensity >= epsilon / K > 0, which is what off-policy evaluation (IPS, doubly robust)
needs to score any other policy on this log; the recorded propensity is the exact probability
the logging policy had of choosing the route it chose.
"""

from __future__ import annotations

import numpy as np

from app.sim.world import World

POLICY_NAME = "epsilon_default"


def choose_routes(
    world: World, merchant: np.ndarray, rng: np.random.Generator, epsilon: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Route index and propensity per row (vectorized over merchants)."""
    eps = world.logging_policy.epsilon if epsilon is None else epsilon
    n = len(merchant)
    k = world.merchant_ncand[merchant]
    u = rng.random((n, 2))
    explore = u[:, 0] < eps
    j = np.minimum((u[:, 1] * k).astype(np.int64), k - 1)
    default = world.merchant_default[merchant]
    route = np.where(explore, world.merchant_cand[merchant, j], default)
    propensity = np.where(route == default, 1.0 - eps + eps / k, eps / k)
    return route, propensity


def propensity_of(world: World, merchant: np.ndarray, route: np.ndarray,
                  epsilon: float | None = None) -> np.ndarray:  # fmt: skip
    """Logging propensity of given (merchant, route) pairs, e.g. to score a log afresh."""
    eps = world.logging_policy.epsilon if epsilon is None else epsilon
    k = world.merchant_ncand[merchant]
    p = np.where(route == world.merchant_default[merchant], 1.0 - eps + eps / k, eps / k)
    return np.where(world.merchant_cand_mask[merchant, route], p, 0.0)
