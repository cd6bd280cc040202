"""Statistics for A/B arms and shadow challengers (pure numpy/scipy, no Kafka).

- Arms by hash(payment_id) mod 100, so every attempt of a payment stays in one arm.
- Two-proportion z-test (pooled standard error for the test, unpooled for the interval).
- An always-valid p-value (mixture sequential probability ratio test on the difference of two
  proportions, normal approximation): it may be peeked at after every batch without inflating
  the false-positive rate, which a repeated z-test does.
- Off-policy estimates of a challenger's approval rate from logged propensities: IPS,
  self-normalized IPS and doubly robust.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


def bucket(payment_id: str) -> int:
    """0..99, stable across processes and restarts."""
    return int.from_bytes(hashlib.blake2b(payment_id.encode(), digest_size=8).digest(), "big") % 100


def arm_for(payment_id: str, arms: Sequence[tuple[str, int]], holdout_pct: int = 0) -> str:
    """The arm of a payment: buckets [0, holdout) are 'holdout', then arms by percentage."""
    b = bucket(payment_id)
    if b < holdout_pct:
        return "holdout"
    edge = holdout_pct
    for name, pct in arms:
        edge += pct
        if b < edge:
            return name
    return arms[-1][0]


@dataclass(frozen=True)
class ZTest:
    diff: float  # p2 - p1
    z: float
    p_value: float  # two-sided
    ci95: tuple[float, float]


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> ZTest:
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p2 - p1) / se0 if se0 > 0 else 0.0
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    half = norm.ppf(0.975) * se
    return ZTest(p2 - p1, z, float(2 * norm.sf(abs(z))), (p2 - p1 - half, p2 - p1 + half))


def msprt_p_value(x1: int, n1: int, x2: int, n2: int, tau2: float = 1e-4) -> float:
    """Always-valid p-value for H0: p1 == p2 with a N(0, tau2) mixture over the difference.
    Take the running minimum over looks (the caller keeps it) for the sequential p-value."""
    p1, p2 = x1 / n1, x2 / n2
    v = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    if v <= 0:
        return 1.0
    theta = p2 - p1
    log_lr = 0.5 * math.log(v / (v + tau2)) + tau2 * theta**2 / (2 * v * (v + tau2))
    return float(min(1.0, math.exp(-log_lr)))


@dataclass(frozen=True)
class OffPolicy:
    ips: float
    snips: float
    dr: float | None
    effective_n: float  # (sum w)^2 / sum w^2: how many logged rows the estimate rests on


def off_policy(reward: np.ndarray, logged_propensity: np.ndarray, target_prob: np.ndarray,
               q_logged: np.ndarray | None = None,
               q_target: np.ndarray | None = None) -> OffPolicy:  # fmt: skip
    """Value of a target policy from logs of another.

    target_prob: probability the target policy picks the logged action; q_logged: a reward
    model at the logged action; q_target: the same model's expected reward under the target
    policy at that context (sum over actions of pi(a|x) q(x, a)). DR needs both.
    """
    w = target_prob / logged_propensity
    ips = float(np.mean(w * reward))
    snips = float(np.sum(w * reward) / np.sum(w)) if np.sum(w) > 0 else float("nan")
    dr = None
    if q_logged is not None and q_target is not None:
        dr = float(np.mean(q_target + w * (reward - q_logged)))
    ess = float(np.sum(w) ** 2 / np.sum(w**2)) if np.sum(w**2) > 0 else 0.0
    return OffPolicy(ips, snips, dr, ess)
