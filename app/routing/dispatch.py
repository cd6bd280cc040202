"""Which policy decides a request: experiment arm, model, fallbacks, demoted routes, shadows.

The score agent calls `Dispatcher.decide` once per request and gets the final decision (after
every fallback) and the challengers' shadow decisions for the same request:

1. arm: hash(payment_id) mod 100 over the configured arms (plus an optional holdout), so every
   attempt of a payment stays in one arm; no arms configured = one arm named "default" running
   AUTHPILOT_ROUTING_POLICY;
2. the arm's policy: expected_value (the champion, or the arm's named challenger),
   success_rate, best_single_route (AUTHPILOT_BEST_ROUTES) or oracle (simulator truth, demos
   only); expected_value falls back to success_rate when no model is loaded (NO_MODEL) or the
   drift monitor has raised a model alarm (MODEL_FALLBACK);
3. routes the drift monitor demoted are eliminated but keep exploration traffic;
4. every loaded challenger scores the same feature rows and yields a shadow decision.

Buffers are preallocated once; the feature rows are built at most once per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.experiments.assignment import arm_for
from app.features.online import FeatureState, new_buffer
from app.routing import baselines, expected_value, success_rate
from app.routing.latency import RouteLatency
from app.state.windows.count import Snapshot

DEFAULT_ARM = "default"
SHADOW_ARM = "shadow"
POLICIES = (expected_value.POLICY_NAME, success_rate.POLICY_NAME, baselines.BEST_SINGLE,
            baselines.ORACLE)  # fmt: skip


OracleP = Callable[[dict[str, Any], str], float]  # (request, route) -> true p_approve


class Health(Protocol):
    """What the drift monitor tells the router (app.monitoring)."""

    @property
    def demoted(self) -> frozenset[str]: ...

    def model_ok(self) -> bool: ...


class _AllHealthy:
    demoted: frozenset[str] = frozenset()

    def model_ok(self) -> bool:
        return True


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
        if arm.policy not in POLICIES:
            raise ValueError(f"arm {arm.name}: policy must be one of {POLICIES}")
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


class Dispatcher:
    def __init__(self, s: Any, models: Any, features: FeatureState,
                 sr_lookup: Callable[[str], Snapshot | None], health: Health | None = None,
                 oracle_p: OracleP | None = None,
                 latency: RouteLatency | None = None) -> None:  # fmt: skip
        self.models = models
        self.features = features
        self.sr_lookup = sr_lookup
        self.sr_params = success_rate.SRParams.from_settings(s)
        self.ev_params = expected_value.EVParams.from_settings(s)
        self.best_routes = dict(s.best_routes)
        self.health: Health = health or _AllHealthy()
        self.oracle_p = oracle_p
        self.latency = latency.get if latency is not None else None
        self.arms = parse_arms(list(s.experiment_arms), s.experiment_holdout_pct)
        self.arm_split = [(a.name, a.pct) for a in self.arms]
        self.by_name = {a.name: a for a in self.arms}
        self.holdout_pct = s.experiment_holdout_pct
        self.holdout = Arm("holdout", s.experiment_holdout_pct, s.holdout_policy)
        self.default = Arm(DEFAULT_ARM, 100, s.routing_policy)
        for a in (*self.arms, self.holdout, self.default):
            if a.policy == baselines.ORACLE and oracle_p is None:
                raise ValueError("the oracle policy needs AUTHPILOT_ORACLE_SCENARIO")
        self.x = new_buffer(64)
        self.p = np.empty(64)
        self.ps = np.empty(64)
        self.shadow_seconds = 0.0  # cost of the last request's shadow scoring
        self.model_p: float | None = None  # last request: the model's p for the chosen route

    def arm(self, req: dict[str, Any]) -> Arm:
        if not self.arms:
            return self.default
        name = arm_for(req["payment_id"], self.arm_split, self.holdout_pct)
        return self.holdout if name == "holdout" else self.by_name[name]

    def decide(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(final decision with its arm, shadow decisions of the loaded challengers)."""
        arm = self.arm(req)
        demoted = self.health.demoted
        k = len(req["candidates"])
        filled = False
        d: dict[str, Any] | None = None
        fallback = None
        if arm.policy == expected_value.POLICY_NAME:
            model = (self.models.challengers.get(arm.model) if arm.model
                     else self.models.champion)  # fmt: skip
            if model is None:
                fallback = "NO_MODEL"
            else:
                # scored even in fallback: the monitor needs the model's estimates to see it
                # recover (its calibration is checked against outcomes it did not route)
                self.features.fill(req, self.x)
                filled = True
                p = model.score_many(self.x, self.p, k)
                if self.health.model_ok():
                    d = expected_value.decide(
                        req, p, model.label, self.ev_params, demoted, self.latency
                    )
                else:
                    fallback = "MODEL_FALLBACK"
        elif arm.policy == baselines.BEST_SINGLE:
            d = baselines.best_single_decide(req, self.best_routes)
        elif arm.policy == baselines.ORACLE:
            assert self.oracle_p is not None
            p_true = [self.oracle_p(req, c["route_id"]) for c in req["candidates"]]
            d = baselines.oracle_decide(req, p_true, self.ev_params.margin_bps)
        if d is None:
            d = success_rate.decide(req, self.sr_lookup, self.sr_params, demoted)
            if fallback:
                d["reason_codes"].append(fallback)
        d["arm"] = arm.name
        self.model_p = None
        if filled:
            ids = [c["route_id"] for c in req["candidates"]]
            self.model_p = float(self.p[ids.index(d["chosen_route"])])
        shadows: list[dict[str, Any]] = []
        self.shadow_seconds = 0.0
        if self.models.challengers:
            t0 = time.perf_counter()
            if not filled:
                self.features.fill(req, self.x)
            for ch in list(self.models.challengers.values()):
                p = ch.score_many(self.x, self.ps, k)
                s = expected_value.decide(req, p, ch.label, self.ev_params, demoted, self.latency)
                s["arm"] = SHADOW_ARM
                shadows.append(s)
            self.shadow_seconds = time.perf_counter() - t0
        return d, shadows
