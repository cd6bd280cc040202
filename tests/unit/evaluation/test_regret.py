"""Regret against the oracle: split by kind, by wrong best, by route pair and segment."""

from __future__ import annotations

import numpy as np
import pytest

from app.evaluation.loop import EXPLOIT, EXPLORE, PROBE, _kind
from app.evaluation.regret import Choices, decompose, markdown

ROUTES = ("a", "b")


def _case():
    # 4 first attempts, 2 routes, value 100, no fees: the oracle takes b on rows 0-2, a on 3
    p_true = np.array([[0.7, 0.9], [0.6, 0.8], [0.5, 0.9], [0.9, 0.6]])
    value = np.full(4, 100.0)
    fees = np.zeros((4, 2))
    cand = np.ones((4, 2), bool)
    # row 0: exploited a (router right on a, 20 points low on b); row 1: explored a;
    # row 2: probe on a; row 3: exploited a, the oracle's route
    p_router = np.array([[0.7, 0.7], [0.6, 0.9], [0.5, 0.9], [0.9, 0.5]])
    chosen = np.array([0, 0, 0, 0])
    kind = np.array([EXPLOIT, EXPLORE, PROBE, EXPLOIT], np.int8)
    seg = ["DE VISA", "DE VISA", "US VISA", "US VISA"]
    return Choices(p_true, value, fees, cand), p_router, chosen, kind, seg


def test_regret_splits_by_kind_and_reads_the_router_error_on_both_routes():
    r = decompose("ev", *_case(), ROUTES)
    assert r.n == 4 and r.on_oracle == pytest.approx(0.25)
    # losses in EV: 20, 20, 40, 0 -> 20 per attempt; in p: 0.2, 0.2, 0.4, 0 -> 20 points
    assert r.value == pytest.approx(20.0) and r.approval_pp == pytest.approx(20.0)
    by = {k.label: k for k in r.kinds}
    assert by["exploit"].share == pytest.approx(0.25) and by["exploit"].n == 2
    assert by["explore"].share == pytest.approx(0.25)
    assert by["probe"].share == pytest.approx(0.5) and by["probe"].value == pytest.approx(10.0)
    assert sum(k.share for k in r.kinds) == pytest.approx(1.0)
    # the wrong best (row 0 only): right on the route it took, 20 points low on the oracle's
    assert r.wrong is not None and r.wrong.n == 1
    assert r.wrong.err_chosen_pp == pytest.approx(0.0)
    assert r.wrong.err_oracle_pp == pytest.approx(-20.0)
    # pairs and segments over the off-oracle rows, largest loss first
    assert [(p.label, p.n) for p in r.pairs] == [("a -> b", 3)]
    assert [(s.label, s.n) for s in r.segments] == [("DE VISA", 2), ("US VISA", 1)]
    assert r.segments[1].share == pytest.approx(0.5)


def test_fees_count_and_a_cheaper_route_can_cost_approval_but_not_value():
    truth, *rest = _case()
    truth.fees[:, 1] = 50.0  # b costs half an approval: the oracle takes a everywhere
    r = decompose("ev", truth, *rest, ROUTES)
    assert r.on_oracle == 1.0 and r.value == 0.0 and r.pairs == []
    # a route that is not a candidate is never the oracle's
    truth2, *rest2 = _case()
    truth2.cand[:, 1] = False
    r2 = decompose("ev", truth2, *rest2, ROUTES)
    assert r2.on_oracle == 1.0 and r2.value == 0.0


def test_the_kind_of_a_decision_comes_from_its_leading_reason_code():
    assert _kind({"reason_codes": ["PROBE:acq-de", "EV_BEST"]}) == PROBE
    assert _kind({"reason_codes": ["EXPLORE", "EV:x"]}) == EXPLORE
    assert _kind({"reason_codes": ["EV_BEST"]}) == EXPLOIT
    assert _kind({}) == EXPLOIT


def test_seeds_pool_into_one_set_of_choices():
    truth = _case()[0]
    both = Choices.concat([truth, truth])
    assert both.p_true.shape == (8, 2) and both.cand.shape == (8, 2)
    assert np.array_equal(both.true_ev()[4:], truth.true_ev())


def test_the_section_names_every_slice():
    md = "\n".join(markdown([decompose("ev", *_case(), ROUTES)]))
    assert "### Where the router loses to the oracle (first attempts)" in md
    for label in (
        "| exploit |",
        "| explore |",
        "| probe |",
        "| exploit, off the oracle's route |",
        "| pair a -> b |",
        "| segment DE VISA |",
    ):
        assert label in md
    assert markdown([]) == []
