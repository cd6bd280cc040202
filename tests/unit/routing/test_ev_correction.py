"""expected_value.decide with the online correction's offsets: the corrected p decides, and
the offsets' uncertainty splits traffic by posterior win shares (with exact propensities)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from app.harness.sample import SampleTraffic
from app.routing.correction import Offset, logit, sigmoid
from app.routing.expected_value import EVParams, decide

REQ = dict(SampleTraffic(4).next_request(1), amount_minor=10000)  # value = 250 at 250 bps
# fees: acq-eu 12, acq-us 10, proc-global 15
IDS = [c["route_id"] for c in REQ["candidates"]]
P = EVParams(margin_bps=250.0, explore=0.0, eliminate_below=0.05, thompson_scale=0.0)


def test_a_strongly_negative_offset_loses_the_argmax():
    p = np.array([0.90, 0.80, 0.91])  # EVs 213, 190, 212.5: acq-eu by half a unit
    flat = [Offset(0.0, 500.0, 400.0)] * 3
    d = decide(dict(REQ, request_id="a"), p, "m", P, offsets=flat)
    assert d["chosen_route"] == "acq-eu"
    assert "CORRECTION:acq-eu=+0.00(n=400)" in d["reason_codes"]
    offs = [Offset(-2.0, 500.0, 400.0), Offset(0.0, 500.0, 400.0), Offset(0.0, 500.0, 400.0)]
    d = decide(dict(REQ, request_id="a"), p, "m", P, offsets=offs)
    s = {x["route_id"]: x for x in d["scores"]}
    assert s["acq-eu"]["p_approve"] == pytest.approx(sigmoid(logit(0.9) - 2.0))  # 0.549
    assert s["acq-eu"]["score"] == pytest.approx(sigmoid(logit(0.9) - 2.0) * 250 - 12)
    assert s["acq-eu"]["samples"] == 400
    assert d["chosen_route"] == "proc-global" and d["reason_codes"][0] == "EV_BEST"
    assert "CORRECTION:proc-global=+0.00(n=400)" in d["reason_codes"]
    # a positive offset lifts a route over the others
    up = [Offset(0.0, 500.0, 0.0), Offset(1.5, 500.0, 300.0), Offset(0.0, 500.0, 0.0)]
    assert decide(dict(REQ, request_id="a"), p, "m", P, offsets=up)["chosen_route"] == "acq-us"


# The request's segment dispersion tau = 0.69 logits (some route's segment moved), then:
# acq-eu: the best (0.90, EV 213), sure (1e5 outcomes: sd 0.011 logits, -3.2 sd is EV 212.2);
# acq-us: close (0.88, EV 210) with no outcomes in the segment (sd = tau = 0.69 logits);
# proc-global: close (0.89, EV 207.5) but sure (+3.2 sd is EV 208.3 < 212.2, it can never win)
P_CLOSE = np.array([0.90, 0.88, 0.89])
TAU2 = 0.69**2
OFFS = [Offset(0.0, 1e5, 1e5, 1e5, TAU2), Offset(0.0, 20.0, 0.0, 0.0, TAU2),
        Offset(0.0, 1e5, 1e5, 1e5, TAU2)]  # fmt: skip
TS = EVParams(margin_bps=250.0, explore=0.0, thompson_scale=1.0)


def _share_by_simulation(p: np.ndarray, offs: list[Offset], n: int = 200_000) -> np.ndarray:
    """P(each route has the highest EV) under independent normal offsets, by fresh draws."""
    rng = np.random.default_rng(7)
    fees = np.array([c["fee_minor"] for c in REQ["candidates"]])
    lp = np.log(p / (1 - p))
    sd = np.array([o.explore_sd(float(q)) for o, q in zip(offs, p, strict=True)])
    ev = 250.0 / (1 + np.exp(-(lp + rng.standard_normal((n, 3)) * sd))) - fees
    return np.bincount(ev.argmax(axis=1), minlength=3) / n


def test_traffic_splits_by_posterior_win_share_and_the_propensity_is_the_share():
    want = _share_by_simulation(P_CLOSE, OFFS)
    assert want[2] < 1e-3 and 0.2 < want[1] < 0.6  # the uncertain route has a real chance
    n = 20_000
    counts: Counter = Counter()
    shares: dict[str, float] = {}
    for k in range(n):
        d = decide(dict(REQ, request_id=f"q{k}"), P_CLOSE, "m", TS, offsets=OFFS)
        r = d["chosen_route"]
        counts[r] += 1
        assert shares.setdefault(r, d["propensity"]) == d["propensity"]  # one share per route
        assert d["reason_codes"][0] == ("EXPLORE" if r == "acq-us" else "EV_BEST")
        posterior = [c for c in d["reason_codes"] if c.startswith("POSTERIOR:")]
        assert posterior == ([f"POSTERIOR:acq-us={d['propensity']:.3f}"] if r == "acq-us" else [])
    assert "proc-global" not in counts
    assert sum(shares.values()) == pytest.approx(1.0)
    for i, r in enumerate(IDS):
        if r in shares:  # the fixed 512 draws against fresh ones: within 3 sd of 512 draws
            assert abs(shares[r] - want[i]) < 3 * math.sqrt(want[i] * (1 - want[i]) / 512)
            assert abs(counts[r] / n - shares[r]) < 4 * math.sqrt(shares[r] / n)  # the hash


def test_with_more_evidence_or_scale_zero_the_mean_best_is_certain():
    sure = [OFFS[0], Offset(0.0, 1e5, 1e5, 1e5, TAU2), OFFS[2]]
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", TS, offsets=sure)
    assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0
    # a thin BIN level under a well-measured country level draws nothing either
    sure = [OFFS[0], Offset(0.0, 20.0, 0.0, 1e5, TAU2), OFFS[2]]
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", TS, offsets=sure)
    assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0
    # no dispersion (no route's segment is off the model): the unmeasured route draws nothing
    calm = [Offset(o.b, o.n, o.weight, o.shared, 0.0) for o in OFFS]
    assert calm[1].explore_sd(0.88) == 0.0
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", TS, offsets=calm)
    assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", P, offsets=OFFS)  # scale 0
    assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0


def test_uniform_exploration_and_posterior_shares_add_up():
    both = EVParams(margin_bps=250.0, explore=0.03, thompson_scale=1.0)
    props: dict[str, float] = {}
    for k in range(5_000):
        d = decide(dict(REQ, request_id=f"u{k}"), P_CLOSE, "m", both, offsets=OFFS)
        props.setdefault(d["chosen_route"], d["propensity"])
    assert props["proc-global"] == pytest.approx(0.01)  # only the uniform tier reaches it
    assert sum(props.values()) == pytest.approx(1.0)


def test_a_demoted_route_gets_no_posterior_share():
    for k in range(2_000):
        d = decide(dict(REQ, request_id=f"d{k}"), P_CLOSE, "m", TS, frozenset({"acq-us"}),
                   None, OFFS)  # fmt: skip
        assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0
    assert "DEMOTED:acq-us" in d["reason_codes"]
