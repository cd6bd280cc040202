"""Statistics for A/B arms, shadow challengers and model evaluation (pure numpy/scipy).

- Two-proportion z-test (pooled standard error for the test, unpooled for the interval).
- An always-valid p-value (mixture sequential probability ratio test on the difference of two
  proportions, normal approximation): it may be peeked at after every batch without inflating
  the false-positive rate, which a repeated z-test does.
- Off-policy estimates of a challenger's approval rate from logged propensities: IPS,
  self-normalized IPS and doubly robust, with analytic standard errors.
- Intervals for the reports (Wilson for rates, normal for means and their differences), a
  non-inferiority guardrail verdict, and calibration: the one reliability/ECE computation,
  used by the training report and the shadow report alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided 95% interval."""

    mean: float
    lo: float
    hi: float


def wilson_ci(x: int, n: int, z: float = Z95) -> Interval:
    """Rate x/n with the Wilson score interval: unlike the Wald interval it stays inside [0, 1]
    and keeps its coverage near 0 and 1, where approval rates of small arms live."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    p = x / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return Interval(p, c - h, c + h)


def mean_ci(x: np.ndarray) -> Interval:
    """Mean with a normal-approximation interval (per-payment values: thousands of rows)."""
    x = np.asarray(x, float)
    m = float(x.mean()) if len(x) else math.nan
    h = Z95 * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else math.nan
    return Interval(m, m - h, m + h)


def ratio_ci(num: np.ndarray, den: np.ndarray) -> Interval:
    """sum(num) / sum(den) over paired rows with a delta-method interval: a share of a gain
    whose numerator and denominator come from the same payments (the retry targets' share of
    the hindsight ceiling's gain), where the two sums' noise is correlated."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    n, d = len(num), float(den.mean()) if len(den) else 0.0
    if n < 2 or d == 0.0:
        return Interval(math.nan, math.nan, math.nan)
    r = float(num.mean()) / d
    h = Z95 * float((num - r * den).std(ddof=1)) / (math.sqrt(n) * abs(d))
    return Interval(r, r - h, r + h)


def diff_of_means(a: np.ndarray, b: np.ndarray) -> Interval:
    """mean(b) - mean(a) with an unpooled (Welch) normal interval: independent samples."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = float(b.mean() - a.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return Interval(d, d - Z95 * se, d + Z95 * se)


def guardrail(diff: Interval, margin: float) -> str:
    """Non-inferiority verdict for a metric where higher is worse (attempts, fees).

    PASS: the whole interval of the increase is under the margin; FAIL: the whole interval is
    over it; INCONCLUSIVE: not enough data to tell (keep running, do not ship on it)."""
    if diff.hi <= margin:
        return "PASS"
    if diff.lo > margin:
        return "FAIL"
    return "INCONCLUSIVE"


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


def sequential_p_values(x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray,
                        tau2: float = 1e-4) -> np.ndarray:  # fmt: skip
    """The always-valid p-value at each look (cumulative counts per look): the running minimum
    of msprt_p_value, which is what may be compared with alpha whenever one peeks."""
    looks = [
        msprt_p_value(int(a), int(m), int(b), int(k), tau2) if m > 0 and k > 0 else 1.0
        for a, m, b, k in zip(x1, n1, x2, n2, strict=True)
    ]
    return np.minimum.accumulate(np.asarray(looks, float)) if looks else np.zeros(0)


@dataclass(frozen=True)
class OffPolicy:
    ips: float
    snips: float
    dr: float | None
    effective_n: float  # (sum w)^2 / sum w^2: how many logged rows the estimate rests on
    ips_se: float = math.nan  # standard errors: IPS and DR are means of i.i.d. terms,
    snips_se: float = math.nan  # SNIPS a ratio of two (delta method)
    dr_se: float | None = None

    def ci95(self, name: str) -> Interval:
        """The 95% interval of one estimate: 'ips', 'snips' or 'dr'."""
        v, se = getattr(self, name), getattr(self, f"{name}_se")
        if v is None or se is None:
            return Interval(math.nan, math.nan, math.nan)
        return Interval(v, v - Z95 * se, v + Z95 * se)


def off_policy(reward: np.ndarray, logged_propensity: np.ndarray, target_prob: np.ndarray,
               q_logged: np.ndarray | None = None,
               q_target: np.ndarray | None = None) -> OffPolicy:  # fmt: skip
    """Value of a target policy from logs of another.

    target_prob: probability the target policy picks the logged action; q_logged: a reward
    model at the logged action; q_target: the same model's expected reward under the target
    policy at that context (sum over actions of pi(a|x) q(x, a)). DR needs both.
    """
    w = target_prob / logged_propensity
    n = len(w)
    root_n = math.sqrt(n) if n > 1 else math.nan
    ips = float(np.mean(w * reward))
    ips_se = float(np.std(w * reward, ddof=1)) / root_n if n > 1 else math.nan
    sw = float(np.sum(w))
    snips = float(np.sum(w * reward)) / sw if sw > 0 else math.nan
    snips_se = math.sqrt(float(np.sum(w**2 * (reward - snips) ** 2))) / sw if sw > 0 else math.nan
    dr = dr_se = None
    if q_logged is not None and q_target is not None:
        terms = q_target + w * (reward - q_logged)
        dr = float(np.mean(terms))
        dr_se = float(np.std(terms, ddof=1)) / root_n if n > 1 else math.nan
    ess = float(np.sum(w) ** 2 / np.sum(w**2)) if np.sum(w**2) > 0 else 0.0
    return OffPolicy(ips, snips, dr, ess, ips_se, snips_se, dr_se)


# Equal-width bins over [0, 1]. 10, not 15: approval probabilities sit in about [0.5, 0.95]
# (5-95% of a trained model's test window), so 10 bins already split that range into ~5 well
# filled bins, while the sampling noise of ECE grows like sqrt(bins / n). Measured on the
# training test window (6,675 rows, outcomes redrawn from p itself, i.e. perfectly
# calibrated): the noise floor is 0.0099 with 10 bins, 0.0118 with 15; a +0.06 biased
# challenger reads 0.050 with both. Segments (>= 50 rows) and shadow agreement sets are small.
ECE_BINS = 10


@dataclass(frozen=True)
class Reliability:
    """Equal-width probability bins: where predictions fell and how often they came true."""

    edges: np.ndarray  # bins + 1 edges over [0, 1]
    count: np.ndarray  # rows per bin
    p_mean: np.ndarray  # mean prediction per bin (nan when empty)
    y_mean: np.ndarray  # observed rate per bin (nan when empty)
    ece: float  # expected calibration error: sum_b n_b / N |y_b - p_b|


def reliability(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability diagram data and ECE of probabilities p against 0/1 outcomes y.

    (y, p) like every metric here and in models.training.evaluate (and scikit-learn's
    y_true, y_prob); y must be 0/1, so passing the arguments swapped raises."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    if len(y) != len(p):
        raise ValueError(f"reliability: {len(y)} outcomes for {len(p)} probabilities")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("reliability: y must be 0/1 outcomes (arguments are (y, p))")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)  # [e_i, e_i+1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_mean = np.bincount(idx, p, bins) / count
        y_mean = np.bincount(idx, y, bins) / count
    gap = np.where(count > 0, np.abs(y_mean - p_mean), 0.0)
    ece = float(np.sum(count * gap) / len(p)) if len(p) else math.nan
    return Reliability(edges, count, p_mean, y_mean, ece)
