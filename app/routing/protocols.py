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
    """What the drift monitor tells the router (app.monitoring)."""

    @property
    def demoted(self) -> frozenset[str]: ...

    def model_ok(self) -> bool: ...


class AllHealthy:
    """No monitor: every route and the model are trusted."""

    demoted: frozenset[str] = frozenset()

    def model_ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Proposal:
    """A policy's answer for one request: its RoutingDecision body, or None with the reason it
    defers to the success-rate fallback (NO_MODEL, MODEL_FALLBACK); `model_p` holds the
    model's p per candidate whenever a model scored them (the monitor checks calibration on
    them even in fallback)."""

    decision: dict[str, Any] | None
    fallback: str | None = None
    model_p: np.ndarray | None = None


class RoutingPolicy(Protocol):
    def propose(self, req: dict[str, Any], demoted: Container[str]) -> Proposal: ...
