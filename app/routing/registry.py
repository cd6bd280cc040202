"""Routing policies by name: the one list the settings, the experiment arms, the worker's
dispatcher and the evaluator build from.

A factory gets the services a policy may read (parameters, models, feature rows, success-rate
windows, route health, latency, simulator truth) and the arm's challenger name, and returns an
object with `propose(req, demoted) -> Proposal`. `RoutingPolicyName` is the settings' type
(app.config); the check below keeps it and the table one list.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from app.routing import best_single, expected_value, oracle, success_rate
from app.routing.correction import Correction, apply
from app.routing.expected_value import EVParams, FeatureRows
from app.routing.oracle import OracleP
from app.routing.protocols import AllHealthy, Health, ModelSource, Proposal, RoutingPolicy
from app.routing.success_rate import SRParams
from app.state.windows.count import Snapshot

RoutingPolicyName = Literal["expected_value", "success_rate", "best_single_route", "oracle"]
NAMES: tuple[str, ...] = get_args(RoutingPolicyName)
FALLBACK = success_rate.POLICY_NAME  # what a policy that cannot decide defers to


@dataclass(frozen=True)
class RoutingServices:
    """Everything a routing policy may read; one per dispatcher."""

    ev: EVParams
    sr: SRParams
    models: ModelSource
    rows: FeatureRows
    sr_lookup: Callable[[str], Snapshot | None]
    best_routes: Mapping[str, str] = field(default_factory=dict)
    health: Health = field(default_factory=AllHealthy)
    latency: Callable[[str], float | None] | None = None
    oracle_p: OracleP | None = None
    correction: Correction | None = None  # the champion's online correction


class ExpectedValuePolicy:
    """The champion (or the named challenger) scores the candidates, the champion's p
    corrected online (a challenger's p is its own: the residuals are the champion's); no model
    or a model alarm defers to the fallback, the model's estimates kept for the monitor."""

    def __init__(self, sv: RoutingServices, model: str | None) -> None:
        self.sv, self.model = sv, model
        self.p = np.empty(sv.rows.x.shape[0])

    def propose(self, req: dict[str, Any], demoted: Container[str]) -> Proposal:
        sv = self.sv
        m = sv.models.challengers.get(self.model) if self.model else sv.models.champion
        if m is None:
            return Proposal(None, "NO_MODEL")
        p = m.score_many(sv.rows.get(req), self.p, len(req["candidates"]))
        offsets = None
        if sv.correction is not None and self.model is None:
            offsets = sv.correction.offsets(req, [c["route_id"] for c in req["candidates"]])
        if not sv.health.model_ok():
            corrected = p.tolist() if offsets is None else [
                apply(x, o) for x, o in zip(p.tolist(), offsets, strict=True)]  # fmt: skip
            return Proposal(None, "MODEL_FALLBACK", p, corrected)
        d = expected_value.decide(req, p, m.label, sv.ev, demoted, sv.latency, offsets)
        return Proposal(d, None, p, [s["p_approve"] for s in d["scores"]])


class SuccessRatePolicy:
    def __init__(self, sv: RoutingServices) -> None:
        self.sv = sv

    def propose(self, req: dict[str, Any], demoted: Container[str]) -> Proposal:
        return Proposal(success_rate.decide(req, self.sv.sr_lookup, self.sv.sr, demoted))


class BestSinglePolicy:
    def __init__(self, sv: RoutingServices) -> None:
        self.routes = sv.best_routes

    def propose(self, req: dict[str, Any], demoted: Container[str]) -> Proposal:
        return Proposal(best_single.best_single_decide(req, self.routes))


class OraclePolicy:
    def __init__(self, sv: RoutingServices) -> None:
        if sv.oracle_p is None:
            raise ValueError("the oracle policy needs AUTHPILOT_ORACLE_SCENARIO")
        self.p_true, self.margin_bps = sv.oracle_p, sv.ev.margin_bps

    def propose(self, req: dict[str, Any], demoted: Container[str]) -> Proposal:
        p = [self.p_true(req, c["route_id"]) for c in req["candidates"]]
        return Proposal(oracle.oracle_decide(req, p, self.margin_bps))


Factory = Callable[[RoutingServices, str | None], RoutingPolicy]
POLICIES: dict[str, Factory] = {
    expected_value.POLICY_NAME: ExpectedValuePolicy,
    success_rate.POLICY_NAME: lambda sv, model: SuccessRatePolicy(sv),
    best_single.POLICY_NAME: lambda sv, model: BestSinglePolicy(sv),
    oracle.POLICY_NAME: lambda sv, model: OraclePolicy(sv),
}
if set(POLICIES) != set(NAMES):  # pragma: no cover - a policy added to one list only
    raise RuntimeError(f"RoutingPolicyName {NAMES} and the registry {tuple(POLICIES)} differ")


def build(name: str, sv: RoutingServices, model: str | None = None) -> RoutingPolicy:
    """The policy `name` over the services; `model` names a challenger for expected_value."""
    if name not in POLICIES:
        raise ValueError(f"unknown routing policy {name!r}: one of {NAMES}")
    return POLICIES[name](sv, model)
