"""Experiment statistics against closed forms and simulation."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from app.experiments.stats import (
    msprt_p_value,
    off_policy,
    two_proportion_z,
)


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


# ---------------------------------------------------------------- against statsmodels / scipy
try:  # statsmodels is a dev dependency; the closed forms below stand in when it is missing
    from statsmodels.stats import proportion as sm_prop
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
except ImportError:  # pragma: no cover
    sm_prop = None

CASES = [(880, 1000, 910, 1000), (45, 60, 30, 55), (9_712, 11_000, 9_890, 11_020), (3, 50, 0, 40)]


@pytest.mark.parametrize("x1,n1,x2,n2", CASES)
def test_z_test_and_its_interval_match_statsmodels(x1, n1, x2, n2):
    t = two_proportion_z(x1, n1, x2, n2)
    if sm_prop is not None:
        z, p = sm_prop.proportions_ztest([x2, x1], [n2, n1])  # pooled variance
        lo, hi = sm_prop.confint_proportions_2indep(x2, n2, x1, n1, method="wald")
    else:  # pragma: no cover
        pp = (x1 + x2) / (n1 + n2)
        z = (x2 / n2 - x1 / n1) / math.sqrt(pp * (1 - pp) * (1 / n1 + 1 / n2))
        p = 2 * norm.sf(abs(z))
        se = math.sqrt(x1 / n1 * (1 - x1 / n1) / n1 + x2 / n2 * (1 - x2 / n2) / n2)
        lo, hi = x2 / n2 - x1 / n1 - 1.959964 * se, x2 / n2 - x1 / n1 + 1.959964 * se
    assert t.z == pytest.approx(z, rel=1e-9)
    assert t.p_value == pytest.approx(p, rel=1e-9)
    assert t.ci95 == pytest.approx((lo, hi), rel=1e-9)


@pytest.mark.parametrize("x,n", [(0, 20), (3, 20), (880, 1000), (20, 20), (98_500, 100_000)])
def test_wilson_interval_matches_statsmodels(x, n):
    from app.experiments.stats import wilson_ci

    ci = wilson_ci(x, n)
    if sm_prop is not None:
        lo, hi = sm_prop.proportion_confint(x, n, method="wilson")
    else:  # pragma: no cover
        z, p = 1.959964, x / n
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = c - h, c + h
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert 0.0 <= ci.lo <= x / n <= ci.hi <= 1.0


def test_means_and_their_difference_match_statsmodels():
    from app.experiments.stats import diff_of_means, mean_ci

    rng = np.random.default_rng(3)
    a = 1 + (rng.random(5000) < 0.12) + (rng.random(5000) < 0.03)  # attempts per payment
    b = 1 + (rng.random(4000) < 0.18)
    d, m = diff_of_means(a, b), mean_ci(b)
    if sm_prop is not None:
        lo, hi = CompareMeans(DescrStatsW(b), DescrStatsW(a)).zconfint_diff(usevar="unequal")
        mlo, mhi = DescrStatsW(b).zconfint_mean()
    else:  # pragma: no cover
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        lo, hi = b.mean() - a.mean() - 1.959964 * se, b.mean() - a.mean() + 1.959964 * se
        h = 1.959964 * b.std(ddof=1) / math.sqrt(len(b))
        mlo, mhi = b.mean() - h, b.mean() + h
    assert d.mean == pytest.approx(b.mean() - a.mean())
    assert (d.lo, d.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert (m.lo, m.hi) == pytest.approx((mlo, mhi), rel=1e-9)


def test_guardrail_verdicts():
    from app.experiments.stats import Interval, guardrail

    assert guardrail(Interval(0.001, -0.004, 0.006), 0.02) == "PASS"
    assert guardrail(Interval(0.05, 0.03, 0.07), 0.02) == "FAIL"
    assert guardrail(Interval(0.02, 0.01, 0.03), 0.02) == "INCONCLUSIVE"


@pytest.mark.parametrize("x1,n1,x2,n2", CASES[:3])
@pytest.mark.parametrize("tau2", [1e-4, 1e-3])
def test_msprt_matches_the_mixture_likelihood_ratio_by_quadrature(x1, n1, x2, n2, tau2):
    """p = 1 / Lambda with Lambda = int N(d; theta, v) N(theta; 0, tau2) dtheta / N(d; 0, v),
    integrated numerically instead of the closed form the module uses."""
    from scipy.integrate import quad

    p1, p2 = x1 / n1, x2 / n2
    v = p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    d = p2 - p1
    sd = math.sqrt(tau2)

    def ratio(th: float) -> float:  # N(d; th, v) N(th; 0, tau2) / N(d; 0, v), stable in logs
        return math.exp(norm.logpdf(d, th, math.sqrt(v)) + norm.logpdf(th, 0, sd)
                        - norm.logpdf(d, 0, math.sqrt(v)))  # fmt: skip

    lam, _ = quad(ratio, -12 * sd, 12 * sd, points=[0.0, d], limit=200)
    assert msprt_p_value(x1, n1, x2, n2, tau2) == pytest.approx(min(1.0, 1 / lam), rel=1e-6)


def test_sequential_p_values_are_the_running_minimum():
    from app.experiments.stats import sequential_p_values

    rng = np.random.default_rng(4)
    a, b = rng.random(8000) < 0.85, rng.random(8000) < 0.87
    n = np.arange(400, 8001, 400)
    x1, x2 = np.cumsum(a)[n - 1], np.cumsum(b)[n - 1]
    seq = sequential_p_values(x1, n, x2, n)
    each = [
        msprt_p_value(int(i), int(k), int(j), int(k)) for i, j, k in zip(x1, x2, n, strict=True)
    ]
    assert seq == pytest.approx(np.minimum.accumulate(each))
    assert np.all(np.diff(seq) <= 0)


def test_reliability_bins_and_ece():
    from app.experiments.stats import reliability

    rng = np.random.default_rng(6)
    p = rng.uniform(0.5, 1.0, 200_000)
    y = rng.random(len(p)) < p
    rel = reliability(y, p, bins=10)
    assert rel.ece < 0.005 and rel.count.sum() == len(p) and rel.count[:5].sum() == 0
    k = 7  # bin [0.7, 0.8): by hand
    m = (p >= 0.7) & (p < 0.8)
    assert rel.count[k] == m.sum()
    assert (rel.p_mean[k], rel.y_mean[k]) == pytest.approx((p[m].mean(), y[m].mean()))
    assert reliability(y, np.clip(p + 0.05, 0, 1)).ece == pytest.approx(0.05, abs=0.01)
    with pytest.raises(ValueError, match="0/1"):  # (p, y) passed for (y, p)
        reliability(p, y)


def test_off_policy_standard_errors_match_the_bootstrap():
    rng = np.random.default_rng(8)
    n, k = 20_000, 3
    p_true = rng.uniform(0.7, 0.95, size=(n, k))
    logged = rng.integers(0, k, n)
    mu = np.full(n, 1 / k)
    r = (rng.random(n) < p_true[np.arange(n), logged]).astype(float)
    target = p_true.argmax(axis=1)
    pi = (logged == target).astype(float)
    q = np.clip(p_true + rng.normal(0, 0.05, size=p_true.shape), 0, 1)
    ql, qt = q[np.arange(n), logged], q[np.arange(n), target]
    est = off_policy(r, mu, pi, ql, qt)
    boots = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        boots.append(off_policy(r[i], mu[i], pi[i], ql[i], qt[i]))
    for name in ("ips", "snips", "dr"):
        bse = float(np.std([getattr(b, name) for b in boots], ddof=1))
        assert getattr(est, f"{name}_se") == pytest.approx(bse, rel=0.15)
    ci = est.ci95("dr")
    assert ci.lo < est.dr < ci.hi and ci.hi - ci.lo == pytest.approx(2 * 1.959964 * est.dr_se)
