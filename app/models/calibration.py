"""Probability calibration applied after the trees: isotonic (PAV) or Platt, chosen on data.

Routing multiplies p_approve by money, so a probability must mean what it says. Both maps are
tiny and serialise into the model manifest: isotonic as knots for np.interp, Platt as (a, b) of
sigmoid(a * logit(p) + b). The choice is made on held-out validation data, never on training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from raw model probability to calibrated probability."""

    kind: Literal["none", "isotonic", "platt"]
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    a: float = 1.0
    b: float = 0.0

    def apply(self, p: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Calibrate p (in place into out when given: the scoring hot path allocates nothing)."""
        out = p if out is None else out
        if self.kind == "isotonic":
            out[:] = np.interp(p, self._xa, self._ya)
        elif self.kind == "platt":
            z = self.a * _logit(p) + self.b
            out[:] = 1.0 / (1.0 + np.exp(-z))
        elif out is not p:
            out[:] = p
        return out

    @property
    def _xa(self) -> np.ndarray:
        return np.asarray(self.x)

    @property
    def _ya(self) -> np.ndarray:
        return np.asarray(self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": self.x, "y": self.y, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Calibration:
        if not d:
            return cls("none")
        return cls(d["kind"], list(d.get("x", [])), list(d.get("y", [])), d.get("a", 1.0),
                   d.get("b", 0.0))  # fmt: skip


def fit_isotonic(p: np.ndarray, y: np.ndarray, max_knots: int = 512) -> Calibration:
    """Pool-adjacent-violators on (p, y) sorted by p; knots at block means."""
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order].astype(float)
    # blocks: [sum_y, weight, sum_p]
    sy, w, sp = [], [], []
    for yi, pi in zip(ys, ps, strict=True):
        sy.append(yi)
        w.append(1.0)
        sp.append(pi)
        while len(sy) > 1 and sy[-2] / w[-2] > sy[-1] / w[-1]:
            s2, w2, p2 = sy.pop(), w.pop(), sp.pop()
            sy[-1] += s2
            w[-1] += w2
            sp[-1] += p2
    # block means of sorted p are non-decreasing, but sum/count can round a block of equal
    # values 1 ulp below its neighbour; np.interp needs xp sorted, so make that exact
    x = np.maximum.accumulate(np.array(sp) / np.array(w))
    v = np.array(sy) / np.array(w)
    if len(x) > max_knots:  # keep the map small for the manifest
        idx = np.linspace(0, len(x) - 1, max_knots).round().astype(int)
        x, v = x[idx], v[idx]
    v = np.clip(v, EPS, 1 - EPS)
    return Calibration("isotonic", x.tolist(), v.tolist())


def fit_platt(p: np.ndarray, y: np.ndarray, iters: int = 50) -> Calibration:
    """Logistic regression of y on logit(p) by Newton's method."""
    z = _logit(p)
    a, b = 1.0, 0.0
    for _ in range(iters):
        q = 1.0 / (1.0 + np.exp(-(a * z + b)))
        g = np.array([np.sum((q - y) * z), np.sum(q - y)])
        wq = q * (1 - q)
        h = np.array([[np.sum(wq * z * z), np.sum(wq * z)], [np.sum(wq * z), np.sum(wq)]])
        h += np.eye(2) * 1e-9
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return Calibration("platt", a=float(a), b=float(b))


def choose(p: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Calibration, dict[str, float]]:
    """Fit each map on one half of the validation data, score log loss on the other half,
    refit the winner on all of it. Returns the map and the half-split scores."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(p))
    a, b = idx[: len(p) // 2], idx[len(p) // 2 :]
    scores = {"none": log_loss(y[b], p[b])}
    fits = {"isotonic": fit_isotonic, "platt": fit_platt}
    for name, fit in fits.items():
        cal = fit(p[a], y[a])
        scores[name] = log_loss(y[b], cal.apply(p[b].copy()))
    best = min(scores, key=scores.get)  # type: ignore[arg-type]
    return (Calibration("none") if best == "none" else fits[best](p, y)), scores
