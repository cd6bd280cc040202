"""The sweep's non-tree challengers: logistic regression and a small MLP, in numpy.

Both see the same features as the trees, standardized (train mean and sd), a missing value
replaced by the mean and flagged in an indicator column per feature that is ever missing
(trees route missing values themselves; a linear model must be told). Trained by full-batch
L-BFGS (logistic, scipy) and minibatch Adam (MLP), calibrated on the validation window like the
trees, and scored vectorized into preallocated buffers: `score_many` is the Scorer protocol
(app.routing.protocols) the evaluator and the latency bench call. No GPU, no new dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.models.calibration import Calibration


@dataclass
class Standardizer:
    mean: np.ndarray
    sd: np.ndarray
    flags: np.ndarray  # indices of features given a missing indicator

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        mean = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        sd = np.nanstd(x, axis=0)
        sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, 1.0)
        flags = np.flatnonzero(np.isnan(x).any(axis=0))
        return cls(mean, sd, flags)

    @property
    def width(self) -> int:
        return len(self.mean) + len(self.flags)

    def apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """x (n, f) into out (n, width): standardized, NaN -> 0 (the mean), then the flags."""
        f = len(self.mean)
        z = out[:, :f]
        np.subtract(x, self.mean, out=z)
        np.divide(z, self.sd, out=z)
        miss = np.isnan(z)
        z[miss] = 0.0
        out[:, f:] = miss[:, self.flags]
        return out


def _sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.negative(z, out=out)
    np.clip(out, -40, 40, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


@dataclass
class DenseModel:
    """A logistic regression (hidden = 0) or a one-hidden-layer ReLU MLP, calibrated."""

    label: str
    std: Standardizer
    w1: np.ndarray  # (width, hidden) or (width, 1) for the logistic
    b1: np.ndarray
    w2: np.ndarray | None = None  # (hidden, 1)
    b2: float = 0.0
    calibration: Calibration = field(default_factory=lambda: Calibration("none"))
    _zbuf: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    _hbuf: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    @property
    def parameters(self) -> int:
        n = self.w1.size + self.b1.size
        return n + (self.w2.size + 1 if self.w2 is not None else 0)

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._zbuf) < n:  # grown once to the largest batch, then reused
            self._zbuf = np.empty((n, self.std.width))
            self._hbuf = np.empty((n, self.w1.shape[1]))
        return self._zbuf[:n], self._hbuf[:n]

    def raw(self, x: np.ndarray, out: np.ndarray, n: int | None = None) -> np.ndarray:
        n = len(x) if n is None else n
        z, h = self._buffers(n)
        self.std.apply(x[:n], z)
        np.matmul(z, self.w1, out=h)
        h += self.b1
        o = out[:n]
        if self.w2 is None:
            o[:] = h[:, 0]
        else:
            np.maximum(h, 0.0, out=h)
            np.matmul(h, self.w2[:, 0], out=o)
            o += self.b2
        return _sigmoid(o, out=o)

    def score_many(self, x: np.ndarray, out: np.ndarray, n: int | None = None) -> np.ndarray:
        o = self.raw(x, out, n)
        return self.calibration.apply(o, out=o)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, label: str = "logistic"
                 ) -> DenseModel:  # fmt: skip
    """L2-regularized logistic regression by L-BFGS on the standardized features."""
    from scipy.optimize import minimize

    std = Standardizer.fit(x)
    z = std.apply(x, np.empty((len(x), std.width)))
    n, d = z.shape

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        s = z @ w + b
        p = _sigmoid(s.copy())
        eps = 1e-12
        ll = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)) + 0.5 * l2 * w @ w
        g = p - y
        return float(ll), np.concatenate([z.T @ g / n + l2 * w, [g.mean()]])

    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})  # fmt: skip
    return DenseModel(label, std, res.x[:d, None].copy(), res.x[d : d + 1].copy())


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 32, epochs: int = 12,
            batch: int = 512, lr: float = 3e-3, l2: float = 1e-5, seed: int = 0,
            x_valid: np.ndarray | None = None, y_valid: np.ndarray | None = None,
            label: str = "mlp") -> DenseModel:  # fmt: skip
    """One hidden ReLU layer, minibatch Adam on log loss; keeps the epoch with the best
    validation log loss (early stopping) when a validation set is given."""
    rng = np.random.default_rng(seed)
    std = Standardizer.fit(x)
    z = std.apply(x, np.empty((len(x), std.width)))
    d = z.shape[1]
    params = [rng.normal(0, np.sqrt(2 / d), (d, hidden)), np.zeros(hidden),
              rng.normal(0, np.sqrt(1 / hidden), (hidden, 1)), np.zeros(1)]  # fmt: skip
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    best: tuple[float, list[np.ndarray]] | None = None
    for _ in range(epochs):
        order = rng.permutation(len(z))
        for i in range(0, len(z), batch):
            idx = order[i : i + batch]
            zb, yb = z[idx], y[idx]
            w1, b1, w2, b2 = params
            h_pre = zb @ w1 + b1
            h = np.maximum(h_pre, 0)
            p = _sigmoid((h @ w2)[:, 0] + b2[0])
            g = (p - yb)[:, None] / len(idx)
            gw2 = h.T @ g + l2 * w2
            gb2 = g.sum(axis=0)
            gh = (g @ w2.T) * (h_pre > 0)
            gw1 = zb.T @ gh + l2 * w1
            gb1 = gh.sum(axis=0)
            step += 1
            for k, gk in enumerate((gw1, gb1, gw2, gb2)):
                m[k] = 0.9 * m[k] + 0.1 * gk
                v[k] = 0.999 * v[k] + 0.001 * gk * gk
                mh = m[k] / (1 - 0.9**step)
                vh = v[k] / (1 - 0.999**step)
                params[k] = params[k] - lr * mh / (np.sqrt(vh) + 1e-8)
        if x_valid is not None and y_valid is not None:
            cand = DenseModel(label, std, params[0], params[1], params[2], float(params[3][0]))
            pv = cand.raw(x_valid, np.empty(len(x_valid)))
            ll = float(-np.mean(y_valid * np.log(pv + 1e-12)
                                + (1 - y_valid) * np.log(1 - pv + 1e-12)))  # fmt: skip
            if best is None or ll < best[0]:
                best = (ll, [p.copy() for p in params])
    if best is not None:
        params = best[1]
    return DenseModel(label, std, params[0], params[1], params[2], float(params[3][0]))
