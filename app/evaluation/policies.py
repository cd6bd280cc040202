"""Routers and retriers for the closed loop: thin wrappers over the worker's policy functions.

Each router decides with exactly the function the worker's score agent calls and learns from
outcomes with the same state code (FeatureState for the model, success-rate rings for the
fallback), kept in dicts instead of RocksDB tables. Retriers return RetryDecision bodies.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from app.features.online import FeatureState, new_buffer
from app.models.serving.scoring import CompiledModel
from app.retry.engine import RetryParams, decide_retry
from app.retry.rules import Counters, NetworkRules
from app.routing import baselines, expected_value, success_rate
from app.routing.latency import RouteLatency
from app.sim.truth import p_approve
from app.sim.world import World
from app.state.windows.count import CountRing, Snapshot, update_success_rate

OWNERS = ("card", "route", "bin", "merchant")


class Router(Protocol):
    name: str

    def decide(self, req: dict[str, Any]) -> dict[str, Any]: ...

    def observe(self, outcome: dict[str, Any]) -> None: ...


class Retrier(Protocol):
    name: str

    def after_decline(self, outcome: dict[str, Any], counters: Counters,
                      now_ms: int) -> dict[str, Any]: ...  # fmt: skip


class BestSingleRouter:
    name = baselines.BEST_SINGLE

    def __init__(self, routes: Mapping[str, str]) -> None:
        self.routes = dict(routes)

    def decide(self, req: dict[str, Any]) -> dict[str, Any]:
        return baselines.best_single_decide(req, self.routes)

    def observe(self, outcome: dict[str, Any]) -> None:
        pass


class OracleRouter:
    name = baselines.ORACLE

    def __init__(self, world: World, margin_bps: float) -> None:
        self.world, self.margin_bps = world, margin_bps

    def decide(self, req: dict[str, Any]) -> dict[str, Any]:
        p = [p_approve(self.world, req, c["route_id"]) for c in req["candidates"]]
        return baselines.oracle_decide(req, p, self.margin_bps)

    def observe(self, outcome: dict[str, Any]) -> None:
        pass


class SuccessRateRouter:
    """The worker's fallback router with its success-rate rings in one dict, learning through
    the same update_success_rate as the worker's route owner."""

    name = success_rate.POLICY_NAME

    def __init__(self, params: success_rate.SRParams, window: int,
                 rings: dict[bytes, bytes] | None = None) -> None:  # fmt: skip
        self.params, self.window = params, window
        self.ring = CountRing(window)
        self.rings: dict[bytes, bytes] = dict(rings or {})

    def lookup(self, key: str) -> Snapshot | None:
        v = self.rings.get(key.encode())
        return None if v is None else self.ring.read_one(v)

    def decide(self, req: dict[str, Any]) -> dict[str, Any]:
        return success_rate.decide(req, self.lookup, self.params)

    def observe(self, outcome: dict[str, Any]) -> None:
        update_success_rate(self.rings, outcome, self.ring)


class ExpectedValueRouter:
    """The champion model through the scoring core, features from FeatureState over dicts."""

    name = expected_value.POLICY_NAME

    def __init__(self, model: CompiledModel, params: expected_value.EVParams,
                 stores: Mapping[str, dict[bytes, bytes]] | None = None) -> None:  # fmt: skip
        self.model, self.params = model, params
        self.stores = {o: dict((stores or {}).get(o, {})) for o in OWNERS}
        self.features = FeatureState(self.stores)
        self.latency = RouteLatency()
        self.x = new_buffer(64)
        self.p = np.empty(64)

    def decide(self, req: dict[str, Any]) -> dict[str, Any]:
        rows = self.features.fill(req, self.x)
        p = self.model.score_many(self.x, self.p, len(rows))
        return expected_value.decide(req, p, self.model.label, self.params,
                                     latency=self.latency.get)  # fmt: skip

    def observe(self, outcome: dict[str, Any]) -> None:
        for owner in OWNERS:
            self.features.update_outcome(outcome, owner)
        self.latency.observe(outcome["route_id"], outcome["latency_ms"])


class EngineRetrier:
    def __init__(self, rules: NetworkRules, params: RetryParams, name: str = "engine") -> None:
        self.rules, self.params, self.name = rules, params, name

    def after_decline(self, outcome: dict[str, Any], counters: Counters,
                      now_ms: int) -> dict[str, Any]:  # fmt: skip
        return decide_retry(outcome, counters, self.rules, self.params, now_ms)


class FixedScheduleRetrier:
    name = baselines.FIXED_SCHEDULE

    def __init__(self, rules: NetworkRules) -> None:
        self.rules = rules

    def after_decline(self, outcome: dict[str, Any], counters: Counters,
                      now_ms: int) -> dict[str, Any]:  # fmt: skip
        return baselines.fixed_schedule_retry(outcome, counters, self.rules, now_ms)


def warm_copy(router: Router) -> Router:
    """A fresh router with the same learned state (every policy run starts from the history)."""
    if isinstance(router, ExpectedValueRouter):
        fresh = ExpectedValueRouter(router.model, router.params, router.stores)
        fresh.latency.mean = dict(router.latency.mean)
        return fresh
    if isinstance(router, SuccessRateRouter):
        return SuccessRateRouter(router.params, router.window, router.rings)
    return copy.copy(router)
