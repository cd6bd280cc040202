"""expected_value.decide with the online correction's offsets: the corrected p decides, and
the offsets' uncertainty picks the routes worth exploring (with exact propensities)."""

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
P = EVParams(margin_bps=250.0, explore=0.0, eliminate_below=0.05)


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


# acq-eu: the best (0.90, EV 213), sure; acq-us: close (0.88, EV 210) with the evidence of a
# new segment (n = 20: sd 0.69 logits, optimistic p 0.936, EV 224); proc-global: close (0.89,
# EV 207.5) but sure (n = 5000: sd 0.045, optimistic EV 208.6 < 213)
P_CLOSE = np.array([0.90, 0.88, 0.89])
OFFS = [Offset(0.0, 2_000.0, 1_980.0), Offset(0.0, 20.0, 0.0), Offset(0.0, 5_000.0, 4_980.0)]
PLAUS = EVParams(margin_bps=250.0, explore=0.0, explore_plausible=0.1, explore_z=1.0)


def test_the_plausible_set_has_the_uncertain_close_route_not_the_sure_one():
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", PLAUS, offsets=OFFS)
    assert "PLAUSIBLE:acq-us" in d["reason_codes"]
    o = OFFS[1]
    hi = sigmoid(logit(0.88) + o.sd(0.88)) * 250 - 10
    assert hi > 0.90 * 250 - 12 > 0.88 * 250 - 10  # why acq-us is in
    o = OFFS[2]
    assert sigmoid(logit(0.89) + o.sd(0.89)) * 250 - 15 < 0.90 * 250 - 12  # why proc-global is out
    n = 20_000
    counts: Counter = Counter()
    for k in range(n):
        d = decide(dict(REQ, request_id=f"q{k}"), P_CLOSE, "m", PLAUS, offsets=OFFS)
        counts[d["chosen_route"]] += 1
        want = {"acq-eu": 0.9, "acq-us": 0.1}[d["chosen_route"]]
        assert d["propensity"] == pytest.approx(want)
        assert d["reason_codes"][0] == ("EXPLORE" if d["chosen_route"] == "acq-us" else "EV_BEST")
    assert "proc-global" not in counts
    assert abs(counts["acq-us"] / n - 0.1) < 4 * math.sqrt(0.09 / n)


def test_with_more_evidence_or_no_plausible_share_nothing_extra_is_explored():
    sure = [OFFS[0], Offset(0.0, 5_000.0, 4_980.0), OFFS[2]]
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", PLAUS, offsets=sure)
    assert not any(c.startswith("PLAUSIBLE:") for c in d["reason_codes"])
    assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", P, offsets=OFFS)  # share 0
    assert not any(c.startswith("PLAUSIBLE:") for c in d["reason_codes"])
    assert d["propensity"] == 1.0


def test_a_demoted_route_is_never_plausible():
    d = decide(dict(REQ, request_id="x"), P_CLOSE, "m", PLAUS, frozenset({"acq-us"}), None, OFFS)
    assert not any(c.startswith("PLAUSIBLE:") for c in d["reason_codes"])
    assert "DEMOTED:acq-us" in d["reason_codes"]
    for k in range(2_000):
        d = decide(dict(REQ, request_id=f"d{k}"), P_CLOSE, "m", PLAUS, frozenset({"acq-us"}),
                   None, OFFS)  # fmt: skip
        assert d["chosen_route"] == "acq-eu" and d["propensity"] == 1.0
