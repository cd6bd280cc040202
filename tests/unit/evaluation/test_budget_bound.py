"""The causal bound on retries (app.evaluation.ceiling.budget_bound) and the paired share
interval (app.experiments.stats.ratio_ci) the retry targets are read with."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from app.evaluation.ceiling import budget_allocation, budget_bound
from app.experiments.stats import ratio_ci


def _allocation_value(a: np.ndarray, p: np.ndarray, r: tuple[int, ...]) -> tuple[float, float]:
    """(expected value, expected attempts) of retrying payment i up to r[i] times."""
    q = 1 - p
    k = np.array(r)
    value = float((a * (1 - q**k)).sum())
    tries = float(sum(sum(qi**j for j in range(ki)) for qi, ki in zip(q, k, strict=True)))
    return value, tries


def test_unlimited_budget_is_every_chain_retried() -> None:
    a = np.array([100.0, 50.0, 10.0])
    p = {0: 0.5, 1: 0.9, 2: 0.0}
    assert budget_bound(a, p, 1e9, 3) == pytest.approx(100 * (1 - 0.5**3) + 50 * (1 - 0.1**3))
    assert budget_bound(a, p, 0.0, 3) == 0.0
    assert budget_bound(a, {}, 10.0, 3) == 0.0


@pytest.mark.parametrize("seed", range(20))
def test_bound_is_above_every_integer_policy_within_budget(seed: int) -> None:
    """Every deterministic allocation of retries (payment i retried up to r_i times, stopping
    at an approval) within the expected-attempt budget recovers no more than the bound; and
    the bound is reached when the budget lands exactly on whole chains."""
    rng = np.random.default_rng(seed)
    n, retries = 4, 3
    a = rng.uniform(10, 100, n)
    p = rng.uniform(0.0, 0.95, n)
    budget = float(rng.uniform(0.5, 6.0))
    bound = budget_bound(a, dict(enumerate(p)), budget, retries)
    best = 0.0
    for r in itertools.product(range(retries + 1), repeat=n):
        value, tries = _allocation_value(a, p, r)
        if tries <= budget + 1e-12:
            best = max(best, value)
    assert best <= bound + 1e-9
    order = np.argsort(-(a * p))
    whole = tuple(retries if i in order[:2] else 0 for i in range(n))
    value, tries = _allocation_value(a, p, whole)
    assert budget_bound(a, dict(enumerate(p)), tries, retries) == pytest.approx(value)


def test_allocation_is_the_bound_payment_by_payment() -> None:
    """The knapsack's per-payment split: whole chains in decreasing a p, a fraction of the
    chain the budget ends in, nothing after it, nothing for payments it has no p for; summed,
    the bound."""
    a = np.array([100.0, 50.0, 10.0, 80.0])
    p = {0: 0.5, 1: 0.9, 2: 0.2}  # a p = 50, 45, 2; payment 3 may not be retried
    chain0 = (1 - 0.5**3) / 0.5  # expected attempts of payment 0's three retries: 1.75
    chain1 = (1 - 0.1**3) / 0.9  # 1.11
    out = budget_allocation(a, p, chain0 + chain1 / 2, 3)
    assert out[0] == pytest.approx(100 * (1 - 0.5**3))
    assert out[1] == pytest.approx(50 * (1 - 0.1**3) / 2)
    assert out[2] == 0.0 and out[3] == 0.0
    assert out.sum() == pytest.approx(budget_bound(a, p, chain0 + chain1 / 2, 3))
    assert not budget_allocation(a, {}, 10.0, 3).any()


def test_ratio_interval_covers_the_true_share() -> None:
    """The delta-method interval of sum(num) / sum(den) covers the true ratio about 95% of the
    time on paired rows (here num = 0.4 den + noise correlated with den)."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(400):
        den = rng.exponential(1.0, 2_000) * (rng.random(2_000) < 0.3)
        num = 0.4 * den + rng.normal(0, 0.5, 2_000) * (den > 0)
        ci = ratio_ci(num, den)
        assert ci.lo < ci.mean < ci.hi
        hits += ci.lo <= 0.4 <= ci.hi
    assert 0.91 <= hits / 400 <= 0.99
    assert np.isnan(ratio_ci(np.zeros(3), np.zeros(3)).mean)
