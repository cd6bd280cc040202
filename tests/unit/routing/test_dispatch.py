"""The worker's routing step: arms, fallbacks, demoted routes, shadows (real compiled models)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.config import Settings
from app.experiments.assignment import arm_for
from app.features.definitions import feature_hash
from app.features.online import FeatureState
from app.harness.sample import SampleTraffic
from app.models.serving.scoring import CompiledModel
from app.routing.dispatch import Dispatcher, parse_arms
from tests.modelkit import build_versions


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = build_versions(tmp_path_factory.mktemp("models"))
    return (CompiledModel(root / "router" / "v1", feature_hash()),
            CompiledModel(root / "router" / "v2", feature_hash()))  # fmt: skip


class Health:
    def __init__(self, demoted=frozenset(), ok=True):
        self.demoted, self._ok = frozenset(demoted), ok

    def model_ok(self):
        return self._ok


def _dispatcher(champion=None, challengers=None, health=None, **settings):
    s = Settings(**settings)
    slots = SimpleNamespace(champion=champion, challengers=challengers or {})
    features = FeatureState({o: {} for o in ("card", "route", "bin", "merchant")})
    return Dispatcher(s, slots, features, lambda key: None, health)


REQS = [SampleTraffic(8).next_request(1_767_225_600_000 + i * 1000) for i in range(400)]


def test_default_arm_runs_the_champion_and_falls_back_without_a_model(models):
    dec = _dispatcher(models[0]).decide(REQS[0])
    d, shadows = dec.record, dec.shadows
    assert d["arm"] == "default" and d["policy"] == "expected_value"
    assert d["model_version"] == "router/v1" and shadows == []
    dec = _dispatcher(None).decide(REQS[0])
    d = dec.record
    assert d["policy"] == "success_rate" and "NO_MODEL" in d["reason_codes"]


def test_model_alarm_falls_back_but_keeps_scoring_for_the_monitor(models):
    disp = _dispatcher(models[0], health=Health(ok=False))
    dec = disp.decide(REQS[1])
    d = dec.record
    assert d["policy"] == "success_rate" and "MODEL_FALLBACK" in d["reason_codes"]
    assert dec.model_p is not None and 0.0 < dec.model_p < 1.0


def test_demoted_route_gets_only_probe_traffic(models):
    route = REQS[0]["candidates"][0]["route_id"]
    disp = _dispatcher(models[0], health=Health({route}))
    chosen = []
    for r in REQS:
        d = disp.decide(r).record
        assert f"DEMOTED:{route}" in d["reason_codes"]
        chosen.append(d["chosen_route"])
        if d["chosen_route"] == route:
            assert "EXPLORE" in d["reason_codes"]
    assert chosen.count(route) / len(chosen) < 0.05


def test_arms_follow_the_payment_hash_and_shadows_score_every_request(models):
    arms = [{"name": "ev", "pct": 60, "policy": "expected_value"},
            {"name": "sr", "pct": 30, "policy": "success_rate"}]  # fmt: skip
    disp = _dispatcher(models[0], {"router": models[1]}, experiment_arms=arms,
                       experiment_holdout_pct=10)  # fmt: skip
    seen = set()
    shadow_seconds = []
    for r in REQS:
        dec = disp.decide(r)
        d, shadows = dec.record, dec.shadows
        shadow_seconds.append(dec.shadow_seconds)
        arm = arm_for(r["payment_id"], [("ev", 60), ("sr", 30)], 10)
        assert d["arm"] == arm
        assert d["policy"] == {"ev": "expected_value", "sr": "success_rate",
                               "holdout": "best_single_route"}[arm]  # fmt: skip
        assert len(shadows) == 1 and shadows[0]["model_version"] == "router/v2"
        assert shadows[0]["arm"] == "shadow"
        seen.add(arm)
    assert seen == {"ev", "sr", "holdout"}
    assert all(t > 0 for t in shadow_seconds)


def test_bad_arm_configurations_are_refused():
    with pytest.raises(ValueError, match="add up to 100"):
        parse_arms([{"name": "a", "pct": 50}], 0)
    with pytest.raises(ValueError, match="policy"):
        parse_arms([{"name": "a", "pct": 100, "policy": "magic"}], 0)
    with pytest.raises(ValueError, match="unique"):
        parse_arms([{"name": "a", "pct": 50}, {"name": "a", "pct": 50}], 0)
    with pytest.raises(ValueError, match="oracle"):
        _dispatcher(routing_policy="oracle")
