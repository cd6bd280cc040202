"""Experiment statistics against closed forms and simulation."""

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import norm

from app.experiments.stats import (
    arm_for,
    bucket,
    msprt_p_value,
    off_policy,
    two_proportion_z,
)


def test_arms_are_stable_and_follow_the_split():
    arms = [("control", 45), ("treatment", 45)]
    got = Counter(arm_for(f"pay-{i}", arms, holdout_pct=10) for i in range(20000))
    assert abs(got["holdout"] / 20000 - 0.10) < 0.01
    assert abs(got["control"] / 20000 - 0.45) < 0.015
    assert arm_for("pay-7", arms, 10) == arm_for("pay-7", arms, 10)
    assert 0 <= bucket("x") < 100


def test_z_test_matches_the_closed_form():
    t = two_proportion_z(880, 1000, 910, 1000)
    p = 1790 / 2000
    z = (0.91 - 0.88) / math.sqrt(p * (1 - p) * (2 / 1000))
    assert t.z == pytest.approx(z)
    assert t.p_value == pytest.approx(2 * norm.sf(z))
    se = math.sqrt(0.88 * 0.12 / 1000 + 0.91 * 0.09 / 1000)
    assert t.ci95[0] == pytest.approx(0.03 - 1.959964 * se, rel=1e-5)


def test_always_valid_p_value_controls_peeking_and_has_power():
    rng = np.random.default_rng(0)
    false_pos = 0
    runs = 200
    for _ in range(runs):  # H0: both arms 0.88; peek every 200 attempts up to 10,000
        a = rng.random(10000) < 0.88
        b = rng.random(10000) < 0.88
        looks = range(200, 10001, 200)
        if min(msprt_p_value(a[:n].sum(), n, b[:n].sum(), n) for n in looks) < 0.05:
            false_pos += 1
    assert false_pos / runs <= 0.05
    # the naive repeated z-test under the same peeking rejects far more often
    naive = 0
    for _ in range(runs):
        a = rng.random(10000) < 0.88
        b = rng.random(10000) < 0.88
        if min(two_proportion_z(a[:n].sum(), n, b[:n].sum(), n).p_value
               for n in range(200, 10001, 200)) < 0.05:  # fmt: skip
            naive += 1
    assert naive > 2 * max(false_pos, 1)
    a = rng.random(20000) < 0.88
    b = rng.random(20000) < 0.91
    assert msprt_p_value(a.sum(), 20000, b.sum(), 20000) < 0.01


def test_off_policy_estimates_recover_a_known_value():
    rng = np.random.default_rng(1)
    n, k = 50000, 3
    p_true = rng.uniform(0.7, 0.95, size=(n, k))  # approval probability per context x route
    logged = rng.integers(0, k, n)  # uniform logging policy
    mu = np.full(n, 1 / k)
    r = (rng.random(n) < p_true[np.arange(n), logged]).astype(float)
    target = p_true.argmax(axis=1)  # a deterministic challenger: best route per context
    pi = (logged == target).astype(float)
    truth = p_true[np.arange(n), target].mean()
    q = np.clip(p_true + rng.normal(0, 0.05, size=p_true.shape), 0, 1)  # imperfect model
    est = off_policy(r, mu, pi, q[np.arange(n), logged], q[np.arange(n), target])
    for v in (est.ips, est.snips, est.dr):
        assert abs(v - truth) < 0.01
    assert est.effective_n == pytest.approx(n / k, rel=0.05)
