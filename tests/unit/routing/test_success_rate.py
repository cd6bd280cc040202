import pytest

from app.harness.sample import SampleTraffic
from app.routing.choice import uniform_draws
from app.routing.success_rate import SRParams, decide
from app.state.windows.count import Snapshot

REQ = SampleTraffic(4).next_request(1)
P = SRParams(min_samples=20, prior=0.8, explore=0.05, eliminate_below=0.2)


def table(**by_key):
    return lambda key: by_key.get(key)


def req(i: int) -> dict:
    return dict(REQ, request_id=f"r{i}")


def test_most_specific_level_with_enough_samples_wins():
    b, c = REQ["bin"], f"{REQ['network']}:{REQ['issuer_country']}"
    lookup = table(**{
        f"acq-eu|bin:{b}": Snapshot(5, 10, 0),  # too few samples: ignored
        f"acq-eu|cc:{c}": Snapshot(90, 100, 0),
        f"acq-us|bin:{b}": Snapshot(60, 100, 0),
        "proc-global|all": Snapshot(70, 100, 0),
    })  # fmt: skip
    d = decide(req(0), lookup, P)
    sc = {s["route_id"]: s for s in d["scores"]}
    assert sc["acq-eu"]["p_approve"] == 0.9 and sc["acq-eu"]["samples"] == 100
    assert sc["acq-us"]["p_approve"] == 0.6
    assert sc["proc-global"]["p_approve"] == 0.7
    assert "LEVEL:acq-eu=cc" in d["reason_codes"]


def test_best_route_gets_most_traffic_and_exploration_share_is_honest():
    lookup = table(**{"acq-eu|all": Snapshot(95, 100, 0), "acq-us|all": Snapshot(80, 100, 0),
                      "proc-global|all": Snapshot(85, 100, 0)})  # fmt: skip
    n = 20000
    picks = [decide(req(i), lookup, P) for i in range(n)]
    best = sum(d["chosen_route"] == "acq-eu" for d in picks) / n
    expected = 1 - P.explore + P.explore / 3
    assert abs(best - expected) < 0.006
    explored = sum("EXPLORE" in d["reason_codes"] for d in picks) / n
    assert abs(explored - P.explore) < 0.006
    # the logged propensity is the policy's real choice probability
    for d in picks[:200]:
        want = expected if d["chosen_route"] == "acq-eu" else P.explore / 3
        assert d["propensity"] == pytest.approx(want)


def test_elimination_and_all_eliminated_fallback():
    lookup = table(**{"acq-eu|all": Snapshot(5, 100, 0), "acq-us|all": Snapshot(50, 100, 0)})
    d = decide(req(1), lookup, P)
    sc = {s["route_id"]: s for s in d["scores"]}
    assert sc["acq-eu"]["eliminated"] and not sc["acq-us"]["eliminated"]
    assert "ELIMINATED:acq-eu" in d["reason_codes"]
    all_bad = table(**{f"{r['route_id']}|all": Snapshot(1, 100, 0) for r in REQ["candidates"]})
    d = decide(req(2), all_bad, P)
    assert "ALL_ELIMINATED" in d["reason_codes"]
    assert not any(s["eliminated"] for s in d["scores"])
    # ... but a demoted route stays out: only the drift monitor's probe may send it traffic
    for i in range(200):
        d = decide(req(100 + i), all_bad, P, demoted={"acq-eu"})
        assert "ALL_ELIMINATED" in d["reason_codes"] and d["chosen_route"] != "acq-eu"
    every = decide(req(4), all_bad, P, demoted={"acq-eu", "acq-us", "proc-global"})
    assert not any(s["eliminated"] for s in every["scores"])  # nowhere else to send it


def test_ties_go_to_the_cheaper_route_and_decisions_are_deterministic():
    d1 = decide(req(3), table(), SRParams(explore=0.0))
    cheapest = min(REQ["candidates"], key=lambda c: c["fee_minor"])["route_id"]
    assert d1["chosen_route"] == cheapest and d1["propensity"] == 1.0
    assert decide(req(3), table(), P) == decide(req(3), table(), P)
    assert uniform_draws("a") == uniform_draws("a") != uniform_draws("b")
