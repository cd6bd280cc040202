"""The online correction: the model is a prior, recent outcomes per route x segment correct it.

Per candidate route the model gives p; the correction adds an offset b in logit space,
    p' = sigmoid(logit(p) + b),
estimated from the residual sums of the route's three keys (app.state.windows.residual: route,
route x issuer country, route x BIN), each shrunk towards its parent:
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
level.

Segment dispersion (what exploration draws from): how far a route x segment (issuer
country) may sit from its route is not a constant. Where the model is right, the segments of
every route agree with it and the other routes' model estimates can be trusted; where one
route's segment has moved (an issuer shift: the chosen route's French cards at -1 logit), the
other routes' estimates for that segment are as suspect. Per request, over its candidates:
    tau^2 = max_r (d_r^2 - z^2 se_r^2),   d_r = raw logit residual of r's segment - b_route(r)
(a method-of-moments estimate that is 0 unless some route's segment is off by more than z
standard errors; z = `dispersion_z`). It is the prior variance of every candidate's segment
deviation: exploration draws from the posterior sd 1 / sqrt(1 / tau^2 + w_r q (1 - q)) (0 when
tau = 0: nothing suggests the model is wrong there), and the segment level's prior strength
becomes 1 / (tau^2 q (1 - q)) pseudo-outcomes when that is under `prior_segment` (a segment shown
to have moved speaks for itself sooner). A fixed width (the segment prior alone, 20 outcomes,
~0.5 logits) explored everywhere forever: measured at Thompson scale 1, the steady share of the
oracle's uplift fell from 67% to 40% (AUTHPILOT_EV_THOMPSON_SCALE's note).
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
    prior_segment: float = 20.0  # issuer country and BIN: pseudo-outcomes at the parent's
    max_offset: float = 4.0
    decay: Decay = field(default_factory=Decay)
    dispersion_z: float = 2.0  # a segment's deviation counts beyond this many standard errors

    @classmethod
    def from_settings(cls, s: Any) -> CorrectionParams:
        decay = Decay(s.correction_half_life_ms, s.correction_half_life_outcomes)
        return cls(s.correction_enabled, s.correction_prior_route, s.correction_prior_segment,
                   s.correction_max_offset, decay, s.correction_dispersion_z)  # fmt: skip


@dataclass(frozen=True)
class Offset:
    """A route's correction for one request: the logit offset, the effective number of
    outcomes behind it, the recent outcomes at the most specific level (reason codes), the
    recent outcomes at the issuer country level (what exploration can teach) and the
    request's segment dispersion tau^2 (module docstring)."""

    b: float
    n: float
    weight: float
    shared: float = math.inf
    tau2: float = 0.0

    def sd(self, p: float) -> float:
        """sd of b around a corrected p: 1 / sqrt(n p (1 - p))."""
        return _sd(self.n, p)

    def explore_sd(self, p: float) -> float:
        """Posterior sd of the route's segment deviation (route x issuer country) under the
        request's dispersion: what posterior exploration draws from; 0 when tau = 0. Not the
        BIN level: a route x BIN key is rare (most hold a few outcomes that decay before the
        BIN comes back), so drawing from it explores every request while teaching little; a
        country's keys are shared by many requests, so exploring them pays back."""
        if self.tau2 <= 0.0:
            return 0.0
        return 1.0 / math.sqrt(1.0 / self.tau2 + self.shared * _pq(p))


def _pq(p: float) -> float:
    q = min(max(p, 0.02), 0.98)
    return q * (1.0 - q)


def _sd(n: float, p: float) -> float:
    return 1.0 / math.sqrt(max(n, 1.0) * _pq(p))


NO_OFFSET = Offset(0.0, math.inf, 0.0)


def _shrunk(level: Residual, k: float, b: float, cap: float) -> float:
    """A level's offset: its observed rate shrunk towards the parent's corrected rate."""
    w, a, s = level
    if w <= 1e-9:
        return b
    # logit(q) - logit(r) as one log of odds, the parent's corrected rate sigmoid(logit(r) + b)
    # from odds x e^b: one log and one exp instead of three calls (app.bench.correction)
    r = min(max(s / w, _EPS), 1.0 - _EPS)
    o = r / (1.0 - r) * math.exp(b)
    q = min(max((a + k * o / (1.0 + o)) / (w + k), _EPS), 1.0 - _EPS)
    return min(max(math.log(q * (1.0 - r) / ((1.0 - q) * r)), -cap), cap)


def route_offset(levels: Sequence[Residual], params: CorrectionParams) -> float:
    """The route level's offset, shrunk towards the model (b = 0)."""
    return _shrunk(levels[2], params.prior_route, 0.0, params.max_offset)


def deviation2(levels: Sequence[Residual], params: CorrectionParams,
               b_route: float | None = None) -> float:  # fmt: skip
    """d^2 - z^2 se^2 of the route's issuer country level against its route offset
    (`b_route`, computed when not given): > 0 when the segment is off by more than z standard
    errors (module docstring)."""
    w, a, s = levels[1]
    if w < 1.0:
        return 0.0
    if b_route is None:
        b_route = route_offset(levels, params)
    rate = min(max(a / w, 0.02), 0.98)
    d = logit(rate) - logit(s / w) - b_route
    z = params.dispersion_z
    return d * d - z * z / (w * rate * (1.0 - rate))


def offset(levels: Sequence[Residual], params: CorrectionParams, tau2: float = 0.0,
           b_route: float | None = None) -> Offset:  # fmt: skip
    """The shrunk offset from the residual sums of (BIN, issuer country, route); `tau2` is
    the request's segment dispersion (0: the segment level's prior is `prior_segment`);
    `b_route` the route level's offset when the caller has it (route_offset)."""
    cap = params.max_offset
    b = route_offset(levels, params) if b_route is None else b_route
    n = levels[2][0] + params.prior_route
    k = min(params.prior_segment, n)
    if tau2 > 0.0:  # a segment shown to move: its prior is the dispersion's, if narrower
        pbar = levels[1][2] / levels[1][0] if levels[1][0] > 1e-9 else 0.5
        k = min(k, max(2.0, 1.0 / (tau2 * _pq(sigmoid(logit(pbar) + b)))))
    b = _shrunk(levels[1], k, b, cap)
    shared, n = levels[1][0], levels[1][0] + k
    k = min(params.prior_segment, n)
    b = _shrunk(levels[0], k, b, cap)
    return Offset(b, levels[0][0] + k, levels[0][0], shared, tau2)


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
        levels = [[read(get(k), t, d) for k in residual_keys(r, bin_, net, cc)] for r in routes]
        # the route level once per route: deviation2 and offset both start from it
        b_routes = [route_offset(lv, params) for lv in levels]
        pairs = zip(levels, b_routes, strict=True)
        tau2 = max(0.0, *(deviation2(lv, params, b) for lv, b in pairs))
        return [offset(lv, params, tau2, b) for lv, b in zip(levels, b_routes, strict=True)]


def apply(p: float, o: Offset) -> float:
    """The corrected p of one candidate."""
    if o.b == 0.0:
        return p
    return sigmoid(logit(p) + o.b)
