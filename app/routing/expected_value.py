"""Expected-value routing: p_approve x margin(amount) - route fee, with exploration.

p_approve comes from the calibrated champion model (one row per candidate route, scored in one
call), corrected online per route x segment when the caller passes the offsets
(app.routing.correction): the decision's p_approve is the corrected one. The value of an
approval is the merchant's margin on the amount (AUTHPILOT_EV_MARGIN_BPS, per-merchant
overrides in AUTHPILOT_EV_MERCHANT_MARGIN_BPS); the cost of an attempt is the route's fee from
the request. A route whose approval estimate is under the elimination
threshold is skipped unless every route is. Reason codes say which route won and why.

Exploration (exact propensity, app.routing.choice): `explore` uniformly over the eligible
routes; the rest by probability matching on the correction's posterior (Thompson sampling with
its action distribution made explicit): each eligible route gets the share of posterior draws
in which it has the highest EV, and the request's hash picks by those shares, so the logged
propensity is the probability the policy used, not an estimate of it. The draws are a fixed
matrix of 512 standard normals (the same on every worker and in replays); a draw moves a
route's corrected logit by `thompson_scale` x the posterior sd of its route x network x issuer
country deviation under the request's segment dispersion (Offset.explore_sd; why not the BIN
level is said there). Evidence that the model is wrong in this segment directs the exploration:
where some candidate's segment is off its route (an issuer shift), the routes with little
evidence there get traffic in proportion to their chance of being the best; where nothing moved
the width is 0 and the mean's best takes everything beyond `explore`. Scale 0: greedy on the
mean.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.features.online import FeatureState, new_buffer
from app.routing.choice import choose, decision, when_all_eliminated
from app.routing.correction import Offset, apply, logit, sigmoid
from app.routing.latency import latency_penalty

POLICY_NAME = "expected_value"
_DRAWS = 512  # posterior draws per request: win shares in steps of 1/512 (exact binary fractions)
_Z = np.random.default_rng(16).standard_normal((_DRAWS, 64))  # fixed: same shares everywhere
_ZMIN, _ZMAX = _Z.min(axis=0).tolist(), _Z.max(axis=0).tolist()


@dataclass(frozen=True)
class EVParams:
    margin_bps: float = 2000.0
    merchant_margin_bps: dict[str, float] = field(default_factory=dict)
    explore: float = 0.03
    eliminate_below: float = 0.05
    latency_budget_ms: float = 1000.0
    latency_penalty: float = 0.5  # share of the approval value lost at twice the budget
    thompson_scale: float = 0.0  # off by default: AUTHPILOT_EV_THOMPSON_SCALE says why

    @classmethod
    def from_settings(cls, s: Any) -> EVParams:
        return cls(s.ev_margin_bps, dict(s.ev_merchant_margin_bps), s.ev_explore,
                   s.ev_eliminate_below, s.ev_latency_budget_ms,
                   s.ev_latency_penalty, s.ev_thompson_scale)  # fmt: skip


class FeatureRows:
    """The model input of the current request, one row per candidate route, built at most once
    per request: the arm's model and every shadow challenger read the same rows. One buffer,
    preallocated (64 routes), so scoring never allocates."""

    def __init__(self, features: FeatureState, max_routes: int = 64) -> None:
        self.features = features
        self.x = new_buffer(max_routes)
        self._filled = False

    def reset(self) -> None:
        """A new request: the rows are stale."""
        self._filled = False

    def get(self, req: dict[str, Any]) -> np.ndarray:
        """The whole buffer, rows [:len(candidates)] filled for `req`."""
        if not self._filled:
            self.features.fill(req, self.x)
            self._filled = True
        return self.x


def decide(req: dict[str, Any], p_approve: np.ndarray, model_version: str,
           params: EVParams, demoted: Container[str] = frozenset(),
           latency: Callable[[str], float | None] | None = None,
           offsets: list[Offset] | None = None) -> dict[str, Any]:  # fmt: skip
    """A RoutingDecision body (without timing and arm) from per-route approval probabilities.

    `latency(route)` gives a route's recent latency: the part over the budget is charged as a
    share of the approval value (LATENCY reason code). Routes in `demoted` (drift monitoring
    saw them collapse) are eliminated (the dispatcher probes them, app.routing.dispatch).
    `offsets` (one per candidate) correct the model's p online."""
    cands = req["candidates"]
    bps = params.merchant_margin_bps.get(req["merchant_id"], params.margin_bps)
    value = req["amount_minor"] * bps / 10000.0
    probs = p_approve.tolist()
    scores, eligible, evs, fees, pens = [], [], [], [], []
    reasons: list[str] = []
    for i, (c, p) in enumerate(zip(cands, probs, strict=True)):
        if offsets is not None:
            p = apply(p, offsets[i])
        pen = 0.0
        if latency is not None:
            lat = latency(c["route_id"])
            pen = latency_penalty(lat, params.latency_budget_ms, params.latency_penalty)
            if pen > 0:
                reasons.append(f"LATENCY:{c['route_id']}={lat:.0f}ms")
        ev = p * value - c["fee_minor"] - pen * value
        out = p < params.eliminate_below or c["route_id"] in demoted
        n = round(offsets[i].weight) if offsets is not None else 0
        scores.append({"route_id": c["route_id"], "p_approve": p, "score": ev,
                       "fee_minor": c["fee_minor"], "samples": n, "eliminated": out})  # fmt: skip
        evs.append(ev)
        fees.append(c["fee_minor"])
        pens.append(pen)
        if not out:
            eligible.append(i)
    if not eligible:
        reasons.append("ALL_ELIMINATED")
        eligible = when_all_eliminated([c["route_id"] for c in cands], demoted)
        for i in eligible:
            scores[i]["eliminated"] = False
    weights = None
    if offsets is not None and params.thompson_scale > 0 and len(eligible) > 1:
        ps = [s["p_approve"] for s in scores]
        sds = [o.explore_sd(q) for o, q in zip(offsets, ps, strict=True)]
        weights = win_shares(ps, sds, value, fees, pens, eligible, params.thompson_scale)
    chosen, propensity, explored = choose(req["request_id"], evs, fees, eligible,
                                          params.explore, None, weights)  # fmt: skip
    c = scores[chosen]
    reasons.insert(0, "EXPLORE" if explored else "EV_BEST")
    reasons.append(
        f"EV:{c['route_id']}={c['score']:.1f}(p={c['p_approve']:.3f},fee={c['fee_minor']})"
    )
    if offsets is not None:
        o = offsets[chosen]
        reasons.append(f"CORRECTION:{c['route_id']}={o.b:+.2f}(n={o.weight:.0f})")
    if explored and weights is not None and weights[chosen] > 0:
        reasons.append(f"POSTERIOR:{c['route_id']}={weights[chosen]:.3f}")
    ranked = sorted(range(len(scores)), key=lambda i: -evs[i])
    if ranked[0] != chosen and not explored:
        reasons.append("TIE_CHEAPER_ROUTE")
    for s in scores:
        if s["route_id"] in demoted:
            reasons.append(f"DEMOTED:{s['route_id']}")
        elif s["eliminated"]:
            reasons.append(f"ELIMINATED:{s['route_id']}")
    return decision(req, chosen, scores, propensity, POLICY_NAME, model_version, reasons)


def win_shares(
    p: list[float],
    sd: list[float],
    value: float,
    fees: list[int],
    pens: list[float],
    eligible: list[int],
    scale: float,
) -> list[float] | None:
    """Per candidate, the share of the fixed posterior draws in which it has the highest EV
    (0 off the eligible): draw d moves the j-th eligible route's logit by scale x sd x Z[d, j].
    None when one route wins every draw (checked from each column's extreme draws first: the
    common case costs no matrix)."""
    k = len(eligible)
    lp = [logit(p[i]) for i in eligible]
    s = [min(sd[i], 10.0) * scale for i in eligible]
    off = [fees[i] / value + pens[i] for i in eligible]  # EV / value = p - off
    lo = [sigmoid(lp[j] + s[j] * _ZMIN[j]) - off[j] for j in range(k)]
    hi = [sigmoid(lp[j] + s[j] * _ZMAX[j]) - off[j] for j in range(k)]
    top = max(range(k), key=lo.__getitem__)
    if all(hi[j] < lo[top] for j in range(k) if j != top):
        return None
    draws = _Z[:, :k] * np.asarray(s)
    draws += np.asarray(lp)
    np.negative(draws, out=draws)
    np.exp(draws, out=draws)
    draws += 1.0
    np.reciprocal(draws, out=draws)
    draws -= np.asarray(off)
    wins = np.bincount(draws.argmax(axis=1), minlength=k).tolist()
    out = [0.0] * len(p)
    for j, i in enumerate(eligible):
        out[i] = wins[j] / _DRAWS
    return out
