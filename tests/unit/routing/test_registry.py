"""Contract tests over every routing policy in the registry: one list of names, and every
policy answers a request with a valid decision or a reason to fall back."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from app.config import Settings
from app.features.online import FeatureState
from app.harness.sample import SampleTraffic
from app.routing import registry
from app.routing.dispatch import Arm
from app.routing.expected_value import EVParams, FeatureRows
from app.routing.protocols import Proposal
from app.routing.success_rate import SRParams

REQS = [SampleTraffic(3).next_request(1_767_225_600_000 + i * 1000) for i in range(50)]


class FakeModel:
    label = "fake/v1"

    def score_many(self, x: np.ndarray, out: np.ndarray, n: int | None = None) -> np.ndarray:
        out[:n] = np.linspace(0.5, 0.9, n)
        return out[:n]


class Models:
    def __init__(self, champion=None):
        self.champion, self.challengers = champion, {}


def services(champion=None) -> registry.RoutingServices:
    features = FeatureState({o: {} for o in ("card", "route", "bin", "merchant")})
    first = {r["merchant_id"]: r["candidates"][-1]["route_id"] for r in REQS}
    return registry.RoutingServices(EVParams(), SRParams(), Models(champion),
                                    FeatureRows(features), lambda key: None, first,
                                    oracle_p=lambda req, route: 0.7)  # fmt: skip


def test_one_list_of_names_for_the_registry_the_settings_and_the_arms():
    assert set(registry.NAMES) == set(registry.POLICIES)
    for field in ("routing_policy", "holdout_policy"):
        assert get_args(Settings.model_fields[field].annotation) == registry.NAMES
    for name in registry.NAMES:
        assert Arm.parse({"name": "a", "pct": 100, "policy": name}).policy == name
    with pytest.raises(ValueError, match="policy must be one of"):
        Arm.parse({"name": "a", "pct": 100, "policy": "magic"})
    with pytest.raises(ValueError, match="unknown routing policy"):
        registry.build("magic", services())


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_policy_decides_a_candidate_with_an_honest_propensity(name):
    sv = services(FakeModel())
    policy = registry.build(name, sv)
    for req in REQS:
        sv.rows.reset()
        prop = policy.propose(req, frozenset())
        assert isinstance(prop, Proposal) and prop.fallback is None
        d = prop.decision
        assert d is not None and d["policy"] == name
        ids = [c["route_id"] for c in req["candidates"]]
        assert d["chosen_route"] in ids and [s["route_id"] for s in d["scores"]] == ids
        assert 0.0 < d["propensity"] <= 1.0 and d["reason_codes"]
        assert d["request_id"] == req["request_id"] and d["attempt"] == req["attempt"]


def test_expected_value_defers_with_a_reason_and_keeps_the_models_estimates():
    prop = registry.build("expected_value", services()).propose(REQS[0], frozenset())
    assert prop.decision is None and prop.fallback == "NO_MODEL" and prop.model_p is None

    class Alarm:
        demoted: frozenset[str] = frozenset()

        def model_ok(self) -> bool:
            return False

    sv = services(FakeModel())
    sv = registry.RoutingServices(sv.ev, sv.sr, sv.models, sv.rows, sv.sr_lookup, health=Alarm())
    prop = registry.build("expected_value", sv).propose(REQS[0], frozenset())
    assert prop.decision is None and prop.fallback == "MODEL_FALLBACK"
    assert prop.model_p is not None and len(prop.model_p) == len(REQS[0]["candidates"])


def test_the_oracle_needs_the_simulators_truth():
    sv = services()
    sv = registry.RoutingServices(sv.ev, sv.sr, sv.models, sv.rows, sv.sr_lookup)
    with pytest.raises(ValueError, match="ORACLE_SCENARIO"):
        registry.build("oracle", sv)
