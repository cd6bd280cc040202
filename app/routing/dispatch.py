"""Which policy decides a request: experiment arm, model, fallbacks, demoted routes, shadows.

The score agent (and the evaluator, app.evaluation) calls `Dispatcher.decide` once per request
and gets a `Decision`: the final decision (after every fallback), the challengers' shadow
decisions for the same request, the model's estimate for the chosen route and the cost of the
shadows.

1. arm: hash(payment_id) mod 100 over the configured arms (plus an optional holdout), so every
   attempt of a payment stays in one arm; no arms configured = one arm named "default" running
   AUTHPILOT_ROUTING_POLICY;
2. the arm's policy from the registry (app.routing.registry): expected_value (the champion, or
   the arm's named challenger), success_rate, best_single_route (AUTHPILOT_BEST_ROUTES) or
   oracle (simulator truth, demos only); expected_value falls back to success_rate when no
   model is loaded (NO_MODEL) or the drift monitor has raised a model alarm (MODEL_FALLBACK);
3. routes the drift monitor demoted are eliminated (no exploration either), and a demoted
   candidate the monitor says is due a probe gets this request (reason PROBE, propensity 1: the
   probe is a deterministic function of the monitor's state);
4. every loaded challenger scores the same feature rows and yields a shadow decision (the
   model's own p, no online correction: the residuals are the champion's).

The champion's p is corrected online (app.routing.correction) over `residuals`, the published
residual sums; `Decision.learn` says whether the outcome should teach the correction (not a
probe or exploration of a demoted route: the route's outage explains it, not the model).

Buffers are preallocated once; the feature rows are built at most once per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from app.experiments.assignment import arm_for
from app.features.online import FeatureState
from app.routing import expected_value, registry, success_rate
from app.routing.correction import Correction, CorrectionParams
from app.routing.expected_value import FeatureRows
from app.routing.latency import RouteLatency
from app.routing.oracle import OracleP
from app.routing.protocols import AllHealthy, Health, ModelSource
from app.state.windows.count import Snapshot

if TYPE_CHECKING:
    from app.config import Settings

DEFAULT_ARM = "default"
SHADOW_ARM = "shadow"


@dataclass(frozen=True)
class Arm:
    name: str
    pct: int
    policy: str = expected_value.POLICY_NAME
    model: str | None = None  # a challenger's name: this arm routes with it instead

    @classmethod
    def parse(cls, d: Mapping[str, Any]) -> Arm:
        arm = cls(str(d["name"]), int(d["pct"]), str(d.get("policy", cls.policy)),
                  d.get("model"))  # fmt: skip
        if arm.policy not in registry.NAMES:
            raise ValueError(f"arm {arm.name}: policy must be one of {registry.NAMES}")
        if not 0 <= arm.pct <= 100:
            raise ValueError(f"arm {arm.name}: pct must be 0..100")
        return arm


def parse_arms(arms: list[Mapping[str, Any]], holdout_pct: int) -> list[Arm]:
    parsed = [Arm.parse(a) for a in arms]
    total = sum(a.pct for a in parsed) + holdout_pct
    if parsed and total != 100:
        raise ValueError(f"experiment arms + holdout must add up to 100%, got {total}")
    if len({a.name for a in parsed}) != len(parsed) or any(
        a.name in ("holdout", SHADOW_ARM) for a in parsed
    ):
        raise ValueError("arm names must be unique and not 'holdout' or 'shadow'")
    return parsed


@dataclass(frozen=True)
class Decision:
    """What `Dispatcher.decide` returns for one request (timing is the agent's)."""

    record: dict[str, Any]  # the RoutingDecision body, with its arm
    shadows: list[dict[str, Any]] = field(default_factory=list)  # one per loaded challenger
    model_p: float | None = None  # the model's p for the chosen route, when a model scored
    shadow_seconds: float = 0.0  # cost of scoring the shadows
    p: float | None = None  # the corrected model p the decision used for the chosen route
    learn: bool = True  # the outcome may teach the online correction
    fee: float = 0.0  # the chosen route's fee_minor, from the request

    def estimate(self) -> Estimate:
        """What the decision's outcome is checked and learned against, and what a retry of
        it would cost on the same route."""
        return Estimate(self.model_p, self.p, self.learn, self.fee)


class Estimate(NamedTuple):
    """What a decision's outcome is checked and learned against."""

    model_p: float | None  # the model's own p for the chosen route (None: no model scored)
    p: float | None  # the p the decision used, corrected online (model calibration)
    learn: bool  # the outcome may teach the online correction (not a demoted route's probe)
    fee: float  # the chosen route's fee: the retry engine's cost of another attempt on it


class Dispatcher:
    def __init__(self, s: Settings, models: ModelSource, features: FeatureState,
                 sr_lookup: Callable[[str], Snapshot | None], health: Health | None = None,
                 oracle_p: OracleP | None = None,
                 latency: RouteLatency | None = None,
                 residuals: Callable[[bytes], bytes | None] | None = None) -> None:  # fmt: skip
        self.models = models
        self.health: Health = health or AllHealthy()
        self.rows = FeatureRows(features)
        cp = CorrectionParams.from_settings(s)
        correction = Correction(residuals, cp) if residuals is not None and cp.enabled else None
        self.sv = registry.RoutingServices(
            expected_value.EVParams.from_settings(s), success_rate.SRParams.from_settings(s),
            models, self.rows, sr_lookup, dict(s.best_routes), self.health,
            latency.get if latency is not None else None, oracle_p, correction)  # fmt: skip
        self.arms = parse_arms(list(s.experiment_arms), s.experiment_holdout_pct)
        self.arm_split = [(a.name, a.pct) for a in self.arms]
        self.by_name = {a.name: a for a in self.arms}
        self.holdout_pct = s.experiment_holdout_pct
        self.holdout = Arm("holdout", s.experiment_holdout_pct, s.holdout_policy)
        self.default = Arm(DEFAULT_ARM, 100, s.routing_policy)
        self.policies = {a.name: registry.build(a.policy, self.sv, a.model)
                         for a in (*self.arms, self.holdout, self.default)}  # fmt: skip
        self.fallback = registry.build(registry.FALLBACK, self.sv)
        self.ps = np.empty(self.rows.x.shape[0])

    def arm(self, req: dict[str, Any]) -> Arm:
        if not self.arms:
            return self.default
        name = arm_for(req["payment_id"], self.arm_split, self.holdout_pct)
        return self.holdout if name == "holdout" else self.by_name[name]

    def decide(self, req: dict[str, Any]) -> Decision:
        """The final decision with its arm, and the shadow decisions of the challengers."""
        arm = self.arm(req)
        demoted = self.health.demoted
        self.rows.reset()
        proposal = self.policies[arm.name].propose(req, demoted)
        d = proposal.decision
        if d is None:
            d = self.fallback.propose(req, demoted).decision
            assert d is not None
            if proposal.fallback:
                d["reason_codes"].append(proposal.fallback)
        d["arm"] = arm.name
        if demoted:
            self._probe(req, d, demoted)
        model_p = p = None
        chosen = d["chosen_route"]
        i = next(k for k, c in enumerate(req["candidates"]) if c["route_id"] == chosen)
        fee = float(req["candidates"][i]["fee_minor"])
        if proposal.model_p is not None:
            model_p = float(proposal.model_p[i])
            p = proposal.p[i] if proposal.p is not None else model_p
        learn = chosen not in demoted
        if not self.models.challengers:
            return Decision(d, [], model_p, 0.0, p, learn, fee)
        t0 = time.perf_counter()
        k = len(req["candidates"])
        x = self.rows.get(req)
        shadows: list[dict[str, Any]] = []
        for ch in list(self.models.challengers.values()):
            ps = ch.score_many(x, self.ps, k)
            s = expected_value.decide(req, ps, ch.label, self.sv.ev, demoted, self.sv.latency)
            s["arm"] = SHADOW_ARM
            shadows.append(s)
        return Decision(d, shadows, model_p, time.perf_counter() - t0, p, learn, fee)

    def _probe(self, req: dict[str, Any], d: dict[str, Any], demoted: frozenset[str]) -> None:
        """Send this request to a demoted candidate the monitor says is due a probe; the
        monitor is told what the request risks there (its amount x the p of the route the
        policy chose, the amount when there is none) and prefers cheap requests."""
        t = req["event_time"]
        p = next((s.get("p_approve") for s in d.get("scores") or ()
                  if s["route_id"] == d["chosen_route"]), None)  # fmt: skip
        at_risk = float(req["amount_minor"]) * (p if isinstance(p, int | float) else 1.0)
        for c in req["candidates"]:
            r = c["route_id"]
            if r in demoted and self.health.probe_due(r, t, at_risk):
                self.health.probe_sent(r, t)
                if d["chosen_route"] != r:
                    d["chosen_route"] = r
                    d["propensity"] = 1.0
                    d["reason_codes"].insert(0, f"PROBE:{r}")
                return
