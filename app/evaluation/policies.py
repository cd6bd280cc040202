"""Routers for the closed loop: the worker's Dispatcher over the worker's learning state in dicts.

A router here is a `Dispatcher` configured with one arm running the evaluated policy, built
from the same registry the worker builds from, so its fallbacks (NO_MODEL, MODEL_FALLBACK to
success rate) and demotion handling are the production ones. It learns from outcomes with the
worker's state code (FeatureState for the model and the retry counters, success-rate rings for
the fallback, route latency), kept in dicts instead of RocksDB tables. Retriers come from the
retry registry (app.retry.registry) unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.features.definitions import OWNERS
from app.features.online import FeatureState
from app.monitoring.health import HealthMonitor
from app.routing.correction import CorrectionParams
from app.routing.dispatch import Dispatcher, Estimate
from app.routing.latency import RouteLatency
from app.routing.oracle import OracleP
from app.routing.protocols import Scorer
from app.state.windows.count import CountRing, Snapshot, update_success_rate
from app.state.windows.residual import Decay, update_residuals

if TYPE_CHECKING:
    from app.config import Settings


class Router(Protocol):
    name: str
    features: FeatureState  # the learned windows; the retry counters read its card windows

    def decide(self, req: dict[str, Any]) -> dict[str, Any]: ...

    def observe(self, outcome: dict[str, Any]) -> None: ...


class SuccessRateRings:
    """The route owner's table in one dict: the fallback router's success-rate rings and the
    online correction's residual sums, learning through the same update_success_rate and
    update_residuals as the worker's route owner; the dispatcher reads them through `lookup`
    and `rings.get`."""

    def __init__(self, window: int, rings: dict[bytes, bytes] | None = None,
                 decay: Decay | None = None) -> None:  # fmt: skip
        self.window = window
        self.ring = CountRing(window)
        self.rings: dict[bytes, bytes] = dict(rings or {})
        self.decay = decay or Decay()

    def lookup(self, key: str) -> Snapshot | None:
        v = self.rings.get(key.encode())
        return None if v is None else self.ring.read_one(v)

    def observe(self, outcome: dict[str, Any], p: float | None = None) -> None:
        """One outcome; `p` the model's own p for it when it may teach the correction."""
        update_success_rate(self.rings, outcome, self.ring)
        if p is not None:
            update_residuals(self.rings, outcome, p, self.decay)


class LearnedState:
    """What a worker learns from outcomes, over dicts: feature rings per owner, success-rate
    rings, route latency. `copy()` gives every policy run the same warm start."""

    def __init__(self, sr_window: int, stores: Mapping[str, dict[bytes, bytes]] | None = None,
                 rings: dict[bytes, bytes] | None = None,
                 latency: Mapping[str, float] | None = None,
                 decay: Decay | None = None) -> None:  # fmt: skip
        self.stores = {o: dict((stores or {}).get(o, {})) for o in OWNERS}
        self.features = FeatureState(self.stores)
        self.sr = SuccessRateRings(sr_window, rings, decay)
        self.latency = RouteLatency()
        self.latency.mean = dict(latency or {})

    def observe(self, outcome: dict[str, Any], p: float | None = None) -> None:
        for owner in OWNERS:
            self.features.update_outcome(outcome, owner)
        self.sr.observe(outcome, p)
        self.latency.observe(outcome["route_id"], outcome["latency_ms"], outcome["event_time"])

    def copy(self) -> LearnedState:
        return LearnedState(self.sr.window, self.stores, self.sr.rings, self.latency.mean,
                            self.sr.decay)  # fmt: skip


@dataclass(frozen=True)
class StaticModels:
    """A fixed champion and no challengers (the evaluator trains one model)."""

    champion: Scorer | None = None
    challengers: Mapping[str, Scorer] = field(default_factory=dict)


class DispatchRouter:
    """One routing policy as the worker runs it: a Dispatcher with a single arm (no
    experiment arms, no holdout) over `state`, with the worker's health monitor unless
    `monitor=False` (then every route and the model are trusted)."""

    def __init__(self, policy: str, s: Settings, state: LearnedState,
                 models: StaticModels | None = None,
                 oracle_p: OracleP | None = None, monitor: bool = True) -> None:  # fmt: skip
        self.name = policy
        self.state = state
        self.features = state.features
        self.now = 0  # the simulated clock: event time of the last request or outcome
        self.health = HealthMonitor(clock=lambda: self.now) if monitor else None
        self.alerts: list[dict[str, Any]] = []  # Alert.avsc dicts, in event-time order
        self._estimates: dict[str, Estimate] = {}  # request_id -> until its outcome
        one_arm = s.model_copy(update={"routing_policy": policy, "holdout_policy": policy,
                                       "experiment_arms": [],
                                       "experiment_holdout_pct": 0})  # fmt: skip
        state.sr.decay = CorrectionParams.from_settings(s).decay
        self.dispatcher = Dispatcher(one_arm, models or StaticModels(), state.features,
                                     state.sr.lookup, self.health, oracle_p,
                                     state.latency, state.sr.rings.get)  # fmt: skip

    def decide(self, req: dict[str, Any]) -> dict[str, Any]:
        self.now = req["event_time"]
        made = self.dispatcher.decide(req)
        self._estimates[req["request_id"]] = made.estimate()
        if self.health is not None:
            self.alerts += self.health.observe_decision(
                req["event_time"], made.p, req["amount_minor"],
                req["merchant_country"] != req["issuer_country"], req["sca_required"])  # fmt: skip
        return made.record

    def observe(self, outcome: dict[str, Any]) -> None:
        self.now = outcome["event_time"]
        est = self._estimates.pop(outcome["request_id"], None)
        self.state.observe(outcome, est.model_p if est is not None and est.learn else None)
        if self.health is not None:
            self.alerts += self.health.observe_outcome_record(
                outcome, *((est.model_p, est.p) if est is not None else (None, None))
            )
