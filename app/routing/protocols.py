"""What routing policies read and return: the model and route-health protocols, the policy
protocol and its Proposal."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Scorer(Protocol):
    """A loaded model (app.models.serving.scoring.CompiledModel)."""

    label: str  # name/version, the decision's model_version

    def score_many(self, x: np.ndarray, out: np.ndarray, n: int | None = None) -> np.ndarray: ...


class ModelSource(Protocol):
    """The models a router may use (app.models.serving.registry.ModelSlots in the worker)."""

    @property
    def champion(self) -> Scorer | None: ...

    @property
    def challengers(self) -> Mapping[str, Scorer]: ...


class Health(Protocol):
    """What the drift monitor tells the router (app.monitoring): demoted routes, whether a
    demoted route is due a probe now (and that one was sent), whether the model is trusted."""

    @property
    def demoted(self) -> frozenset[str]: ...

    def probe_due(self, route_id: str, event_time: int, at_risk: float | None = None) -> bool: ...

    def probe_sent(self, route_id: str, event_time: int) -> None: ...

    def model_ok(self) -> bool: ...


class AllHealthy:
    """No monitor: every route and the model are trusted."""

    demoted: frozenset[str] = frozenset()

    def probe_due(self, route_id: str, event_time: int, at_risk: float | None = None) -> bool:
        return False

    def probe_sent(self, route_id: str, event_time: int) -> None:
        pass

    def model_ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Proposal:
    """A policy's answer for one request: its RoutingDecision body, or None with the reason it
    defers to the success-rate fallback (NO_MODEL, MODEL_FALLBACK); `model_p` holds the
    model's own p per candidate whenever a model scored them (the residuals of the online
    correction are taken against it, route health compares probes with it) and `p` the p the
    decision used (corrected: the monitor checks calibration on it, even in fallback)."""

    decision: dict[str, Any] | None
    fallback: str | None = None
    model_p: np.ndarray | None = None
    p: list[float] | None = None


class RoutingPolicy(Protocol):
    def propose(self, req: dict[str, Any], demoted: Container[str]) -> Proposal: ...
