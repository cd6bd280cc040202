"""Adaptation measurement: windows and phases from events, segments, time to adapt, the
report's Adaptation section on a small closed loop."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from app.config import Settings
from app.contracts.vocab import DAY_MS, HOUR_MS
from app.evaluation import adaptation, report
from app.evaluation.adaptation import _calibration, oracle_routes, share_of_uplift, time_to_adapt
from app.evaluation.incidents import incidents, segment, windows, without_event
from app.evaluation.loop import AttemptLog, PolicyRun, eval_payments
from app.evaluation.run import EvalConfig, evaluate
from app.sim import load_world


@pytest.mark.parametrize(("scenario", "expect"), [
    ("acquirer_outage", (9.75, 2.0)),  # outage 10.25-10.75: until a day after its end
    ("issuer_shift", (13.5, 2.5)),  # shifts from 14, the slowest ramps for a day: until 16
    ("new_bin_range", (11.5, 1.5)),  # launch on 12: until 13
    ("steady", (21.0, 7.0)),  # no events: the first 75% and the rest
])  # fmt: skip
def test_windows_are_placed_around_the_events(scenario, expect):
    assert windows(load_world(scenario)) == pytest.approx(expect)


def test_a_window_the_user_gives_is_kept():
    w = load_world("acquirer_outage")
    assert windows(w, 5.0, 3.0) == (5.0, 3.0)
    assert windows(w, 20.0, None) == (20.0, 8.0)  # the rest of the scenario
    assert windows(w, None, 2.0) == (21.0, 2.0)


def test_outage_phases_and_segment():
    w = load_world("acquirer_outage")
    (inc,) = incidents(w, 9.75, 11.75)
    day = lambda d: w.start_ms + int(d * DAY_MS)  # noqa: E731
    assert [(p.name, p.start_ms, p.end_ms) for p in inc.phases] == [
        ("before", day(9.75), day(10.25)), ("during", day(10.25), day(10.75)),
        ("after", day(10.75), day(11.75))]  # fmt: skip
    assert inc.route_id == "acq-de" and inc.end_ms == day(10.75)
    t = np.array([day(9.8), day(10.25), day(10.7499), day(10.75), day(12)])
    assert inc.phase_of(t).tolist() == [0, 1, 1, 2, -1]
    # an event outside the evaluated window is not an incident of it
    assert incidents(w, 20, 28) == []
    pays = eval_payments(w, 9.75, 11.75, 200, 1)
    no_de = dict(pays[0], candidates=[c for c in pays[0]["candidates"]
                                      if c["route_id"] != "acq-de"])  # fmt: skip
    assert segment(w, inc, [*pays, no_de]).tolist() == [True] * 200 + [False]


def test_issuer_shift_phases_have_an_adapting_hour_and_country_segment():
    w = load_world("issuer_shift")
    found = incidents(w, *(lambda h, e: (h, h + e))(*windows(w)))
    assert [i.name.split(" (")[0] for i in found] == [
        "issuer_shift us-neo-a", "issuer_shift gb-bank-a on acq-gb",
        "issuer_shift FR issuers on acq-gb"]  # fmt: skip
    fr = found[2]
    start = w.start_ms + 14 * DAY_MS
    assert [(p.name, p.start_ms) for p in fr.phases] == [
        ("before", w.start_ms + int(13.5 * DAY_MS)), ("adapting", start),
        ("after", start + HOUR_MS)]  # fmt: skip
    assert fr.phases[-1].end_ms == w.start_ms + 16 * DAY_MS and fr.end_ms is None
    pays = eval_payments(w, 13.5, 16, 3000, 2)
    seg = segment(w, fr, pays)
    # the BIN says the issuer, the issuer says the country
    assert seg.tolist() == [p["issuer_country"] == "FR" for p in pays]
    assert 0.05 < seg.mean() < 0.25


def test_bin_launch_segment_is_the_new_issuers_bins():
    w = load_world("new_bin_range")
    (inc,) = incidents(w, 11.5, 13)
    assert [p.name for p in inc.phases] == ["before", "after"]
    pays = eval_payments(w, 11.5, 13, 3000, 3)
    seg = segment(w, inc, pays)
    assert seg.tolist() == [p["bin"].startswith("5351") for p in pays]
    t = np.array([p["event_time"] for p in pays])
    assert seg.any() and not seg[t < inc.start_ms].any()  # cold start: none before the launch


def test_without_event_is_the_counterfactual_world():
    w = load_world("acquirer_outage")
    cf = without_event(w, 0)
    assert cf.events == () and len(w.events) == 1
    pays = eval_payments(w, 10.3, 10.7, 1500, 4)
    best, best_cf = oracle_routes(w, pays, 2000), oracle_routes(cf, pays, 2000)
    de = w.route_idx["acq-de"]
    assert not (best == de).any()  # nobody's best route during its collapse
    assert 0.1 < (best_cf == de).mean() < 0.3  # ... but it is for about 18% without it
    assert ((best != best_cf) == (best_cf == de)).all()  # and only those move


def test_time_to_adapt_on_synthetic_sequences():
    # 100 attempts on the old route, then all on the new best one: the 50-window first holds
    # 40 on the best (80%) at attempt 140
    seq = [False] * 100 + [True] * 100
    assert time_to_adapt(seq) == 140
    assert time_to_adapt([True] * 50) == 50  # the earliest a full window allows
    assert time_to_adapt([True] * 49) is None  # not enough attempts to judge
    # 70% on the best forever is never adapted, however long
    rng = np.random.default_rng(0)
    assert time_to_adapt(np.arange(5000) % 10 < 7) is None
    assert time_to_adapt(rng.random(5000) < 0.5) is None
    assert time_to_adapt(seq, window=10, share=0.5) == 105


def test_share_of_uplift_is_the_ratio_of_paired_means():
    rng = np.random.default_rng(1)
    b = rng.normal(2.0, 1.0, 20000)  # the oracle over static
    a = 0.6 * b + rng.normal(0, 0.1, 20000)  # a policy with 60% of it
    s = share_of_uplift(a, b)
    assert s is not None and s.lo < 0.6 < s.hi and s.hi - s.lo < 0.01
    assert share_of_uplift(a, -b) is None  # the oracle gains nothing: no share


def test_small_evaluation_writes_the_adaptation_section(tmp_path):
    """acquirer_outage with few payments: every phase for every policy, the oracle adapts at
    once and is calibrated, the section and its plot are written."""
    policies = ("best_single_route+engine", "success_rate+engine", "expected_value+engine",
                "oracle+engine")  # fmt: skip
    cfg = EvalConfig("acquirer_outage", seeds=(1,), payments=1200, history_attempts=40_000,
                     policies=policies, work=tmp_path / "work")  # fmt: skip
    result = evaluate(cfg, Settings(), say=lambda m: None)
    a = result.adaptation
    assert a is not None and a.window == (9.75, 11.75)
    assert "evaluated days 9.75-11.75" in result.title
    (ir,) = a.incidents
    phases = ["before", "during", "after"]
    for rows in (a.overall, ir.phases):
        assert {(r.policy, r.phase) for r in rows} == {(p, ph) for p in policies for ph in phases}
    ref = {r.phase: r for r in a.overall if r.policy == "oracle+engine"}
    assert all(r.reference == "oracle" for r in ref.values())
    ev = [r for r in a.overall if r.policy == "expected_value+engine"]
    assert all(r.share["first_approval"] is not None for r in ev)  # the oracle gains here
    by = {r.policy: r for r in ir.adapt}
    assert by["oracle+engine"].to_adapt == adaptation.WINDOW  # always on its own route
    assert by["oracle+engine"].best_span == 1.0
    assert by["best_single_route+engine"].best_span < 0.9
    assert 0.05 < ir.moved_share < 0.35  # the ~18% whose best route was acq-de
    health = {h.policy: h for h in ir.health}
    assert set(health) == set(policies)
    # the oracle sends no first attempt to acq-de while it collapses; a cascade that avoided
    # every other route may still land there (2 of ~330 payments measured)
    assert health["oracle+engine"].attempts_until_demoted <= 5
    # route health's probes: only a demoted route's, and a dead route's approve less than the
    # oracle's first attempts during the outage
    assert health["oracle+engine"].probes == 0 and health["oracle+engine"].probe_approved is None
    probed = [h for h in health.values() if h.probes]
    assert probed and all(h.demoted_min is not None and 0 < h.probe_share < 0.2 for h in probed)
    during = next(r for r in ir.phases if r.policy == "oracle+engine" and r.phase == "during")
    assert all(h.probe_approved is not None and h.probe_approved
               < during.metrics["first_approval"].mean for h in probed)  # fmt: skip
    # the targets, checked on the champion, agree with the figures they come from
    assert a.champion == "expected_value+engine"
    checks = {c["check"]: c for c in a.checks}
    dem = checks["route_outage acq-de: attempts on acq-de until demoted, per seed"]
    h = health["expected_value+engine"]
    assert dem["pass"] == (h.demoted_min is not None and h.attempts_until_demoted <= 20)
    during = checks["route_outage acq-de, during: first-attempt approval vs static (pp)"]
    row = next(r for r in ir.phases if r.policy == a.champion and r.phase == "during")
    assert during["pass"] == (row.uplift["first_approval"].mean >= 0)
    assert "chosen-route calibration: mean p - mean first-attempt outcome (pp)" in checks
    # true p is calibrated by definition: within noise of the outcomes
    cal = a.calibration["oracle+engine"]["all"]
    assert cal.lo < 0 < cal.hi and abs(cal.mean) < 0.03
    assert "best_single_route+engine" not in a.calibration  # its decisions carry no p
    assert set(adaptation.band_names()) & set(a.calibration["expected_value+engine"])
    # regret against the oracle: for the policies with estimates, not the oracle's own run
    losses = {r.policy: r for r in a.losses}
    assert set(losses) == {"success_rate+engine", "expected_value+engine"}
    ev_loss = losses["expected_value+engine"]
    assert ev_loss.n == 1200 and 0 < ev_loss.on_oracle < 1 and ev_loss.value > 0
    assert sum(k.share for k in ev_loss.kinds) == pytest.approx(1.0)
    for name, loss in losses.items():  # route health's probes are a slice of their own
        if health[name].probes:
            assert "probe" in {k.label for k in loss.kinds}
    out = tmp_path / "report"
    report.write(result.comparison, out, result.title, "cmd", a)
    md = (out / "report.md").read_text()
    assert "## Adaptation" in md and "### route_outage acq-de" in md
    assert "time to adapt" in md and "Route health of acq-de" in md
    assert "| probes while demoted (first attempts, of the outage's) | probes approved |" in md
    assert "By the decision's p of the chosen route" in md and "| p 0.93-1.00 |" in md
    assert "### Targets (issue 16) for expected_value+engine" in md
    assert "### Where the router loses to the oracle (first attempts)" in md
    assert (out / "adaptation.png").stat().st_size > 20_000
    summary = json.loads((out / "summary.json").read_text())
    inc = summary["adaptation"]["incidents"][0]
    assert [p["name"] for p in inc["phases"]] == phases
    assert len(inc["time_to_adapt"]) == len(policies)
    assert math.isclose(summary["adaptation"]["window_days"][1], 11.75)
    assert {r["policy"] for r in summary["adaptation"]["regret"]} == set(losses)


def _row(policy: str, phase: str, share: float) -> adaptation.PhaseRow:
    e = adaptation.Interval(share, share - 0.05, share + 0.05)
    one = adaptation.Interval(0.01, 0.0, 0.02)
    keys = ("first_approval", "approval", "net_value")
    return adaptation.PhaseRow("segment", phase, policy, 1000, dict.fromkeys(keys, one),
                               dict.fromkeys(keys, one), dict.fromkeys(keys, e))  # fmt: skip


def _adapt(policy: str, tta: int | None) -> adaptation.AdaptRow:
    return adaptation.AdaptRow(policy, 1, 900, 0.7, 0.8, tta, 600, 0.8, tta)


def test_shift_targets_apply_to_segments_the_event_reroutes_only():
    w = load_world("issuer_shift")
    found = incidents(w, 13.5, 16)
    champ = "expected_value+engine"
    reports = [
        adaptation.IncidentReport(found[0], 0.07, 0.01, [_row(champ, "after", 0.9)],
                                  [_adapt(champ, 50)]),  # barely moved: context
        adaptation.IncidentReport(found[2], 0.12, 0.68, [_row(champ, "after", 0.65)],
                                  [_adapt(champ, 480)]),  # rerouted: targets
    ]  # fmt: skip
    a = adaptation.Adaptation((13.5, 16.0), [], reports, {})
    checks = adaptation.targets(a, champ)
    verdicts = [(c["check"].split(":")[0].split(",")[0], c["pass"]) for c in checks]
    assert verdicts == [
        ("issuer_shift us-neo-a (-0.9)", None),
        ("issuer_shift us-neo-a (-0.9)", None),
        ("issuer_shift FR issuers on acq-gb (+1; -1 elsewhere)", True),  # 480
        ("issuer_shift FR issuers on acq-gb (+1; -1 elsewhere)", False),  # 65%
    ]
    assert "context: the event moves 1% of it" in checks[0]["check"]
    reports[1] = adaptation.IncidentReport(found[2], 0.12, 0.68, [_row(champ, "after", 0.75)],
                                           [_adapt(champ, None)])  # fmt: skip
    checks = adaptation.targets(adaptation.Adaptation((13.5, 16.0), [], reports, {}), champ)
    assert [c["pass"] for c in checks[2:]] == [False, True]  # not reached; 75% >= 70%
    assert checks[2]["value"] == "not reached"
    md = adaptation.markdown(replace(a, champion=champ, checks=checks))
    assert "| context |" in md and "| MISS |" in md and "| PASS |" in md


def test_without_events_the_target_is_the_steady_share():
    champ = "expected_value+engine"
    rows = [adaptation.PhaseRow(**{**_row(champ, "window", 0.9).__dict__, "scope": "all"})]
    checks = adaptation.targets(adaptation.Adaptation((21.0, 28.0), rows, [], {}), champ)
    assert [c["pass"] for c in checks] == [True, True, True]  # 90% >= 85% on all three
    assert all(c["check"].startswith("no events: share of the oracle's uplift") for c in checks)


def test_calibration_is_broken_down_by_the_decisions_p():
    """Each band holds the first attempts whose decision p falls in it: here 0.5 decisions
    approving 40% (+10 points) and 0.95 ones approving 95% (0); p = 1.0 is in the last band."""
    n = 400
    p = np.r_[np.full(n, 0.5), np.full(n, 0.95), [1.0]]
    ok = np.r_[np.arange(n) % 10 < 4, np.arange(n) % 20 < 19, [True]]
    m = len(p)
    log = AttemptLog(np.arange(m, dtype=np.int64), np.arange(m, dtype=np.int32),
                     np.ones(m, np.int16), np.zeros(m, np.int16), p, ok, ("r",))  # fmt: skip
    z = np.zeros(m)
    run = PolicyRun("x+engine", 1, z, ok, ok, np.ones(m, np.int32), z, np.zeros(m, np.int32),
                    np.zeros(m, bool), log=log)  # fmt: skip
    cal = _calibration([run], ["x+engine"], [], {1: log.t_ms})["x+engine"]
    low, top = cal["p 0.00-0.70"], cal["p 0.93-1.00"]
    assert low.mean == pytest.approx(0.10) and top.mean == pytest.approx(0.0, abs=1e-3)
    assert "p 0.70-0.85" not in cal and "p 0.85-0.93" not in cal  # empty bands are left out
    assert cal["all"].mean == pytest.approx((0.10 * n) / m)
