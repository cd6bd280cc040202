"""Contract tests over every retry policy in the registry."""

from __future__ import annotations

from typing import get_args

import pytest

from app.config import Settings
from app.harness.sample import SampleTraffic
from app.retry import registry
from app.retry.engine import RetryParams
from app.retry.rules import Counters, NetworkRules

RULES = NetworkRules()


def declines() -> list[dict]:
    world, out = SampleTraffic(6), []
    for i in range(200):
        r = world.next_request(1_767_225_600_000 + i * 60_000)
        o = world.outcome(r, r["candidates"][0]["route_id"], r["event_time"] + 100)
        if not o["approved"]:
            out.append(o)
    return out


def test_one_list_of_names_for_the_registry_and_the_settings():
    assert set(registry.NAMES) == set(registry.POLICIES)
    assert get_args(Settings.model_fields["retry_policy"].annotation) == registry.NAMES
    with pytest.raises(ValueError, match="unknown retry policy"):
        registry.build("magic", RULES, RetryParams())


@pytest.mark.parametrize("name", registry.NAMES)
def test_every_policy_answers_a_decline_with_a_retry_decision(name):
    policy = registry.build(name, RULES, RetryParams())
    assert policy.name == name
    outs = declines()
    assert len(outs) > 10
    for o in outs:
        d = policy.after_decline(o, Counters(), o["event_time"] + 5)
        assert d["action"] in ("RETRY", "STOP") and d["reason_codes"]
        assert d["request_id"] == o["request_id"] and d["attempt"] == o["attempt"]
        assert d["not_before"] >= o["event_time"] and d["decided_at"] == o["event_time"] + 5
