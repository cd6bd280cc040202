"""The online correction: the model is a prior, recent outcomes per route x segment correct it.

Per candidate route the model gives p; the correction adds an offset b in logit space,
    p' = sigmoid(logit(p) + b),
estimated from the residual sums of the route's three keys (app.state.windows.residual: route,
route x network x issuer country, route x BIN), each shrunk towards its parent:
    q_L = (approvals_L + k_L * sigmoid(logit(pbar_L) + b_parent)) / (weight_L + k_L)
    b_L = logit(q_L) - logit(pbar_L)           (pbar_L = the model's mean p on that key)
starting from b = 0 (the model) at the route level. A level with no recent weight inherits its
parent's offset; a level with a lot speaks for itself. Shrinking the observed rate (not a
one-step Newton on b) keeps a collapse from 0.85 to 0.15 at its true -3.5 logits instead of
overshooting. The offset is clamped (+-`max_offset`).

Why it removes selection bias: the sums hold the outcomes of the routes the router chose, so b
is E[y - p | chosen] in logit space, exactly the optimism of an argmax over noisy estimates.

Uncertainty: each level's effective sample is n_L = weight_L + min(k_L, n_parent) (a child
cannot be surer than its parent's prior), so sd(b) ~ 1 / sqrt(n q (1 - q)) at the most specific
level; expected_value uses it to decide which routes are worth exploring (with an exact
propensity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.state.windows.residual import Decay, Residual, read, residual_keys

_EPS = 1e-4


def logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class CorrectionParams:
    """Priors (pseudo-outcomes) per level and the decay; defaults in app.config.Settings."""

    enabled: bool = True
    prior_route: float = 50.0  # route level: pseudo-outcomes at the model's own rate
    prior_segment: float = 20.0  # network x country and BIN: pseudo-outcomes at the parent's
    max_offset: float = 4.0
    decay: Decay = field(default_factory=Decay)

    @classmethod
    def from_settings(cls, s: Any) -> CorrectionParams:
        decay = Decay(s.correction_half_life_ms, s.correction_half_life_outcomes)
        return cls(s.correction_enabled, s.correction_prior_route, s.correction_prior_segment,
                   s.correction_max_offset, decay)  # fmt: skip


@dataclass(frozen=True)
class Offset:
    """A route's correction for one request: the logit offset, the effective number of
    outcomes behind it, the recent outcomes at the most specific level (reason codes), and the
    effective outcomes at the network x country level (what exploration can teach)."""

    b: float
    n: float
    weight: float
    shared: float = math.inf

    def sd(self, p: float) -> float:
        """sd of b around a corrected p: 1 / sqrt(n p (1 - p))."""
        return _sd(self.n, p)

    def explore_sd(self, p: float) -> float:
        """sd of the offset's shared part (route x network x country): what posterior
        exploration draws from. Not the BIN level: a route x BIN key is rare (most hold a few
        outcomes that decay before the BIN comes back), so its prior width never shrinks and
        drawing from it explores every request forever while teaching little; a country's
        keys are shared by many requests, so exploring them pays back."""
        return _sd(self.shared, p)


def _sd(n: float, p: float) -> float:
    q = min(max(p, 0.02), 0.98)
    return 1.0 / math.sqrt(max(n, 1.0) * q * (1.0 - q))


NO_OFFSET = Offset(0.0, math.inf, 0.0)


def offset(levels: Sequence[Residual], params: CorrectionParams) -> Offset:
    """The shrunk offset from the residual sums of (BIN, network x country, route)."""
    b, n = 0.0, math.inf  # the model: offset 0, as sure as its prior says
    cap, shared = params.max_offset, math.inf
    for i in (2, 1, 0):  # route first, then each child shrunk towards its parent
        w, a, s = levels[i]
        k = min(params.prior_route if i == 2 else params.prior_segment, n)
        if w > 1e-9:
            lp = logit(s / w)
            q = (a + k * sigmoid(lp + b)) / (w + k)
            b = min(max(logit(q) - lp, -cap), cap)
        n = w + k
        if i == 1:
            shared = n
    return Offset(b, n, levels[0][0], shared)


class Correction:
    """Reads the published residual sums of a request's candidates and corrects the model's p
    in place. One per dispatcher; `lookup(key)` reads a residual value (the worker's
    GlobalTable cache, the evaluator's dict)."""

    def __init__(self, lookup: Callable[[bytes], bytes | None], params: CorrectionParams) -> None:
        self.lookup = lookup
        self.params = params

    def offsets(self, req: dict[str, object], routes: Sequence[str]) -> list[Offset]:
        if not self.params.enabled:
            return [NO_OFFSET] * len(routes)
        t = int(req["event_time"])  # type: ignore[call-overload]
        d = self.params.decay
        bin_, net, cc = str(req["bin"]), str(req["network"]), str(req["issuer_country"])
        get, params = self.lookup, self.params
        return [offset([read(get(k), t, d) for k in residual_keys(r, bin_, net, cc)], params)
                for r in routes]  # fmt: skip


def apply(p: float, o: Offset) -> float:
    """The corrected p of one candidate."""
    if o.b == 0.0:
        return p
    return sigmoid(logit(p) + o.b)
