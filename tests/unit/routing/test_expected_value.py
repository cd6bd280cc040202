import numpy as np
import pytest

from app.harness.sample import SampleTraffic
from app.routing.expected_value import EVParams, decide

REQ = dict(SampleTraffic(4).next_request(1), amount_minor=10000)  # value = 250 at 250 bps
P = EVParams(margin_bps=250.0, explore=0.0, eliminate_below=0.05)


def test_highest_expected_value_wins_fees_included():
    # fees: acq-eu 12, acq-us 10, proc-global 15 -> EVs 213, 190, 212.5
    p = np.array([0.90, 0.80, 0.91])
    d = decide(dict(REQ, request_id="a"), p, "router/v1", P)
    evs = {s["route_id"]: s["score"] for s in d["scores"]}
    assert evs["acq-eu"] == pytest.approx(0.90 * 250 - 12)
    assert d["chosen_route"] == max(evs, key=evs.get) == "acq-eu"
    assert d["policy"] == "expected_value" and d["model_version"] == "router/v1"
    assert d["propensity"] == 1.0 and d["reason_codes"][0] == "EV_BEST"
    # a big enough fee difference flips the choice to the less likely route
    cheap = dict(REQ, request_id="b", candidates=[dict(c) for c in REQ["candidates"]])
    cheap["candidates"][0]["fee_minor"] = 60
    assert decide(cheap, p, "m", P)["chosen_route"] == "proc-global"


def test_elimination_and_exploration_propensities():
    p = np.array([0.01, 0.8, 0.7])
    d = decide(dict(REQ, request_id="c"), p, "m", EVParams(explore=0.1))
    assert d["scores"][0]["eliminated"] and "ELIMINATED:acq-eu" in d["reason_codes"]
    n, best = 4000, 0
    for i in range(n):
        d = decide(dict(REQ, request_id=f"r{i}"), p, "m", EVParams(explore=0.1))
        assert d["chosen_route"] != "acq-eu"
        best += d["chosen_route"] == "acq-us"
        want = 0.9 + 0.05 if d["chosen_route"] == "acq-us" else 0.05
        assert d["propensity"] == pytest.approx(want)
    assert abs(best / n - 0.95) < 0.015


def test_every_route_under_the_floor_keeps_a_demoted_one_out():
    p = np.array([0.01, 0.02, 0.03])  # all under eliminate_below: a low estimate is soft
    for i in range(200):
        d = decide(dict(REQ, request_id=f"e{i}"), p, "m", EVParams(explore=0.2), {"proc-global"})
        assert "ALL_ELIMINATED" in d["reason_codes"] and "DEMOTED:proc-global" in d["reason_codes"]
        assert d["chosen_route"] != "proc-global"  # a demotion is not
        assert d["scores"][2]["eliminated"] and not d["scores"][0]["eliminated"]
    # every candidate demoted: nothing else to send it to, all are back
    d = decide(dict(REQ, request_id="all"), p, "m", P, {"acq-eu", "acq-us", "proc-global"})
    assert not any(s["eliminated"] for s in d["scores"])


def test_a_route_over_its_latency_budget_is_penalized():
    from app.routing.latency import RouteLatency, latency_penalty

    assert latency_penalty(None, 1000, 0.5) == 0 and latency_penalty(900, 1000, 0.5) == 0
    assert latency_penalty(1500, 1000, 0.5) == pytest.approx(0.25)
    assert latency_penalty(5000, 1000, 0.5) == pytest.approx(0.5)  # capped at twice the budget
    lat = RouteLatency(alpha=0.5)
    for _ in range(10):
        lat.observe("acq-us", 3000)
        lat.observe("proc-global", 200)
    p = np.array([0.90, 0.92, 0.80])  # acq-us would win on approval alone
    params = EVParams(explore=0.0)
    assert decide(dict(REQ, request_id="l0"), p, "m", params)["chosen_route"] == "acq-us"
    d = decide(dict(REQ, request_id="l1"), p, "m", params, latency=lat.get)
    assert d["chosen_route"] != "acq-us"
    assert any(r.startswith("LATENCY:acq-us=") for r in d["reason_codes"])
