"""Route health in attempts: demotion on a window of outcomes, probes with backoff, restore on
the last probes (app.monitoring.route_health), alone and inside the HealthMonitor."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from app.bench.route_demotion import attempts_to_demote, collapse_until_demoted, whole_outage
from app.contracts.vocab import MINUTE_MS
from app.monitoring import HealthMonitor, MonitorConfig, RouteHealthConfig, RouteState
from app.monitoring.route_health import RouteHealth, binomial_tail

CFG = RouteHealthConfig()
SEEDS = range(1, 21)


def _healthy(rh: RouteHealth, n: int, p: float | None = 0.85) -> None:
    """n approved outcomes without route failures: a baseline no window can find collapsed."""
    for _ in range(n):
        assert not rh.observe_healthy(True, False, p)


def _attempts_to_demote(rng: np.random.Generator, fail_rate: float, approve_rate: float,
                        p: float | None) -> int | None:  # fmt: skip
    """Attempts into a collapse until the route's window trips (None: not within 200)."""
    rh = RouteHealth(CFG)
    _healthy(rh, 500, p)
    return collapse_until_demoted(rh, rng, fail_rate, approve_rate, p, 200)


def test_binomial_tail_is_the_upper_tail():
    assert binomial_tail(0, 20, 0.3) == 1.0
    assert binomial_tail(20, 20, 0.5) == pytest.approx(0.5**20)
    assert binomial_tail(1, 4, 0.1) == pytest.approx(1 - 0.9**4)
    assert binomial_tail(3, 10, 0.2) == pytest.approx(
        1 - sum(binomial_tail(k, 10, 0.2) - binomial_tail(k + 1, 10, 0.2) for k in range(3))
    )


def test_route_failures_at_60_percent_demote_within_one_window():
    """An outage (60% route failures, the rest approved as usual) trips the failure test."""
    rng = np.random.default_rng(11)
    delays = [_attempts_to_demote(rng, 0.6, 0.85, 0.85) for _ in SEEDS]
    assert all(d is not None and d <= CFG.window for d in delays), delays
    assert sorted(delays)[len(delays) // 2] <= 12  # type: ignore[operator]


def test_an_approval_collapse_against_the_models_p_demotes_within_the_approval_window():
    """No route failures, approvals 0.85 -> 0.3 where the model still expects 0.85: issuer
    codes only, so the long window decides (20 outcomes cannot tell this from issuers the model
    missed at 0.75; see test_issuer_declines_that_cost_15_points_never_demote)."""
    rng = np.random.default_rng(12)
    delays = [_attempts_to_demote(rng, 0.0, 0.3, 0.85) for _ in SEEDS]
    assert all(d is not None and d <= CFG.approval_window for d in delays), delays
    assert sorted(delays)[len(delays) // 2] <= 55  # type: ignore[operator]


def test_a_collapse_with_some_route_failures_demotes_within_one_window_mostly():
    """25% route failures (often too few alone for the failure test, which wants 4 of 8 or 5 of
    20) and approvals cut to 0.35: the corroborated test (failures beyond 3x the baseline)
    trips within 20 attempts in ~78% of collapses (median 15), the approval window catches the
    rest."""
    rng = np.random.default_rng(13)
    delays = [_attempts_to_demote(rng, 0.25, 0.35, 0.85) for _ in range(100)]
    assert all(d is not None and d <= CFG.approval_window for d in delays), delays
    assert sum(d <= CFG.window for d in delays) >= 65, delays  # type: ignore[operator]
    assert sorted(delays)[50] <= CFG.window  # type: ignore[operator]


def test_the_cause_of_a_demotion_is_the_test_that_tripped():
    rh = RouteHealth(CFG)
    _healthy(rh, 100)
    for _ in range(CFG.window):
        if rh.observe_healthy(False, True, 0.85):
            break
    assert rh.cause == "route_failure"
    rh = RouteHealth(CFG)
    _healthy(rh, 100)
    for _ in range(CFG.approval_window):  # issuer declines only: no route failure
        if rh.observe_healthy(False, False, 0.85):
            break
    assert rh.cause == "route_approval" and rh.cause_window == CFG.approval_window
    assert rh.last_window is not None and rh.last_window[0] == 0.0


@pytest.mark.parametrize("p", [None, 0.9], ids=["no-model-p", "model-p-missed-the-shift"])
def test_issuer_declines_that_cost_15_points_never_demote(p):
    """Approval swings between 90% and 75% every 2000 outcomes (issuer declines), route
    failures stay at 0.5%: a route problem it is not, over 20k outcomes."""
    mon = HealthMonitor(MonitorConfig(), clock=lambda: 0)
    rng = np.random.default_rng(3)
    demoted = []
    for t, u in enumerate(rng.random(20_000)):
        rate = 0.9 if (t // 2000) % 2 == 0 else 0.75
        side = "ROUTE" if u < 0.005 else ("NONE" if u < rate else "ISSUER")
        for a in mon.observe_outcome("a", side == "NONE", side, t * 1_000, p):
            if a["kind"] == "ROUTE_DEMOTED":
                demoted.append(t)
    assert demoted == [], f"{len(demoted)} demotions, first at outcomes {demoted[:5]}"


def test_a_calibrated_steady_route_is_not_demoted_over_100k_outcomes():
    """The model's p is the truth (0.85), route failures 0.5%: every demotion is false."""
    rng = np.random.default_rng(4)
    rh = RouteHealth(CFG)
    false = 0
    for _ in range(100_000):
        fail = bool(rng.random() < 0.005)
        if rh.observe_healthy(not fail and bool(rng.random() < 0.85), fail, 0.85):
            false += 1
            rh.recent.clear()
    assert false == 0, f"{false} false demotions in 100k outcomes"


# ---------------------------------------------------------------- probes
def test_probe_interval_doubles_on_failed_probes_up_to_8_min_halves_when_answered():
    half = MINUTE_MS // 2
    rh = RouteHealth(CFG)
    t = 10 * MINUTE_MS
    rh.demote(t)
    assert rh.state is RouteState.DEMOTED and rh.demoted_at == t
    intervals = []
    for _ in range(7):  # send when due, the probe fails
        wait = next(m for m in range(1, 60) if rh.probe_due(t + m * half))
        assert not rh.probe_due(t + wait * half - 1)
        intervals.append(wait / 2)
        t += wait * half
        rh.last_probe = t
        assert not rh.observe_probe(False, True, 0.85)
        assert not rh.probe_due(t)
    assert intervals == [0.5, 1, 2, 4, 8, 8, 8]  # minutes
    t += 8 * MINUTE_MS
    assert rh.probe_due(t)
    rh.last_probe = t
    assert not rh.observe_probe(False, False, 0.85)  # an issuer decline: the route answered
    assert rh.interval_ms == 4 * MINUTE_MS
    t += 4 * MINUTE_MS
    rh.last_probe = t
    assert not rh.observe_probe(True, False, 0.85)  # one approved probe: half the wait
    assert rh.interval_ms == 2 * MINUTE_MS
    t += 2 * MINUTE_MS
    assert rh.probe_due(t)
    rh.last_probe = t
    assert not rh.observe_probe(True, False, 0.85)  # two in a row: every 30 s again
    assert rh.interval_ms == half
    assert not rh.probe_due(t + half - 1) and rh.probe_due(t + half)
    rh.last_probe = t + half
    assert not rh.observe_probe(False, True, 0.85)  # a route failure doubles it again
    assert rh.interval_ms == 2 * half


def _demoted(fail_rate: float = 0.6, approve_rate: float = 0.43, seed: int = 0,
             fail_every: int = 0) -> RouteHealth:  # fmt: skip
    """A route demoted the way the worker demotes one: a healthy baseline (approved, a route
    failure every `fail_every` outcomes when given), then a collapse (default: 60% route
    failures, 43% of the rest approved) until its window trips."""
    rng = np.random.default_rng(seed)
    rh = RouteHealth(CFG)
    for i in range(200):
        assert not rh.observe_healthy(True, fail_every > 0 and i % fail_every == fail_every - 1,
                                      0.85)  # fmt: skip
    while True:
        fail = bool(rng.random() < fail_rate)
        if rh.observe_healthy(not fail and bool(rng.random() < approve_rate), fail, 0.85):
            rh.demote(0)
            return rh


def test_restored_after_ten_healthy_probes_never_fewer():
    """A route demoted on failing attempts (its short window tripped at 4 failures in 8 at the
    0.5% baseline, the other 4 its last healthy outcomes): against a window half healthy each
    approval is little evidence, and the probes leaving the window join the "as since" counts,
    so the 18th clears 9.2 (12 when a trip took 5 failures: the baseline had learned them)."""
    rh = _demoted(fail_rate=1.0)
    assert rh.cause_window == 8 and rh.dead == pytest.approx([8, 4, 4, 6.8])
    assert [rh.observe_probe(True, False, 0.85) for _ in range(18)] == [False] * 17 + [True]
    assert rh.state is RouteState.HEALTHY and rh.demoted_at is None
    assert len(rh.recent) == 0 and len(rh.probes) == 0
    assert rh.last_window == pytest.approx((0.0, 1.0, 0.85))


def test_one_route_failure_in_the_last_ten_probes_keeps_a_reliable_route_down():
    """P(X >= 1 | 10, baseline 0.5%) = 4.9% < restore_alpha 5%: ten clean probes needed (here
    14: the evidence against the window that tripped binds later, see the test above)."""
    rh = _demoted(fail_rate=1.0)
    assert not any(rh.observe_probe(False, True, 0.85) for _ in range(4))
    assert [rh.observe_probe(True, False, 0.85) for _ in range(14)] == [False] * 13 + [True]
    assert rh.last_window == pytest.approx((0.0, 1.0, 0.85))


def test_one_route_failure_in_ten_is_tolerated_on_a_route_that_often_fails():
    """A ~4% baseline (P(X >= 1 | 10) = 35%): one failure among ten probes restores."""
    rh = RouteHealth(CFG)
    for i in range(400):
        assert not rh.observe_healthy(i % 20 != 0, i % 20 == 0, 0.85)
    # the newest 20 are still in the window, not yet in the baseline: 19 failures of 380
    assert rh.baseline_failure_rate == pytest.approx((19 + 1) / 480)
    while not rh.observe_healthy(False, True, 0.85):  # then it collapses
        pass
    rh.demote(0)
    outcomes = [(True, False)] * 2 + [(False, True)] + [(True, False)] * 7
    assert [rh.observe_probe(ok, f, 0.85) for ok, f in outcomes][-1] is True
    assert rh.last_window == pytest.approx((1 / 10, 9 / 10, 0.85))


def test_the_probes_must_also_refute_the_route_as_it_was_when_demoted():
    """The knife edge the evidence closes: at a ~1.4% learned baseline (a route failing 2%)
    one failure in ten passes the window test, but against a route demoted at 30% failures and
    0.47 x its expected approvals ten probes of which one failed are 3.8 nats of evidence, not
    the 9.2 a restore needs; a healed route keeps approving and gets there."""
    rh = _demoted(seed=4, fail_every=50)  # route_collapse: 6 failures in 20, 8 approved of 17
    assert rh.cause == "route_collapse" and rh.dead == pytest.approx([20, 6, 8, 17])
    assert rh.baseline_failure_rate == pytest.approx(0.0136, abs=1e-4)
    outcomes = [(True, False)] * 4 + [(False, True)] + [(True, False)] * 5
    assert not any(rh.observe_probe(ok, f, 0.85) for ok, f in outcomes)
    n, fails, ok, exp, _ = rh._judge(rh.probes)
    assert binomial_tail(fails, n, rh.baseline_failure_rate) >= CFG.restore_alpha
    assert ok >= CFG.restore_ratio * exp  # the window alone would have restored it
    assert rh.evidence < CFG.restore_evidence
    more = [rh.observe_probe(True, False, 0.85) for _ in range(30)]
    assert True in more and more.index(True) >= 5, more


def test_restore_evidence_adds_up_per_probe_and_never_goes_below_zero():
    rh = _demoted(fail_rate=1.0)
    assert rh.observe_probe(False, True, 0.85) is False and rh.evidence == 0.0
    rh.observe_probe(True, False, 0.85)
    first = rh.evidence
    assert first > 0.0
    rh.observe_probe(False, False, 0.85)  # an issuer decline: evidence for healthy too here
    assert rh.evidence > first  # (the dead route's attempts hardly ever reached the issuer)


def test_restore_needs_approvals_near_the_models_p():
    rh = _demoted(fail_rate=1.0)
    # no route failures but 5 of 10 approved where the model expects 0.9: still down
    assert not any(rh.observe_probe(i < 5, False, 0.9) for i in range(10))
    assert rh.state is RouteState.DEMOTED
    rh = _demoted(fail_rate=1.0)
    # 7 of 10 approved where the model expects 0.9 (< 0.8 x 9 = 7.2): still down
    assert not any(rh.observe_probe(i < 7, False, 0.9) for i in range(10))
    rh = _demoted(fail_rate=1.0)
    # 8 of 10 approved against 0.9 (>= 7.2): restored
    assert [rh.observe_probe(i not in (1, 4), False, 0.9) for i in range(10)][-1] is True


def test_restore_needs_route_failures_near_baseline_whatever_the_approvals():
    rh = _demoted(fail_rate=1.0)
    # 2 route failures of 10 where the model expects little (8 approvals >= 0.8 x 4)
    assert not any(rh.observe_probe(i < 8, i >= 8, 0.4) for i in range(10))
    assert rh.state is RouteState.DEMOTED


def test_a_route_still_in_its_outage_rarely_passes_its_probes():
    """The module's figure: ten probes of a route at 60% route failures and -2 logits on the
    rest pass with probability ~0.003%. A pass here is a false restore: the route is put back
    and demoted again some attempts later (it flaps)."""
    rng = np.random.default_rng(5)
    p_ok = 1.0 / (1.0 + np.exp(-(np.log(0.85 / 0.15) - 2.0)))  # 0.43 once past the route
    passed, groups = 0, 5_000
    rh = _demoted()
    for _ in range(groups):
        rh.last_window = (0.6, 0.4 * p_ok / 0.85, 0.85)  # as the outage's window would show
        rh.demote(0)  # a fresh group of probes on the same learned baseline
        for _ in range(CFG.probe_window):
            fail = bool(rng.random() < 0.6)
            passed += rh.observe_probe(not fail and bool(rng.random() < p_ok), fail, 0.85)
    assert passed / groups < 0.0005, f"{passed} of {groups} groups of 10 probes passed"


@pytest.mark.parametrize("p_ok", [0.43, 0.7])
def test_a_twelve_hour_outage_rarely_flaps_and_a_healed_route_is_back_in_about_ten_probes(p_ok):
    """Whole outages as the broker test sees them: 150 healthy outcomes (a baseline near the
    1% prior, where one failure in ten passes the window), a collapse at 60% route failures
    until demoted, 140 probes of the outage, then healed probes. Measured over 2,000 outages:
    flaps 4 and 10 (the window test alone: 5 and 59, 0.25% and 3%); healed back after a
    median 9 and 10 probes, 90th percentile 11 and 13 (alone: 9 and 9, 10 and 10); demoted
    after a median 7 outcomes of the collapse."""
    rng = np.random.default_rng(17)
    res = [whole_outage(rng, CFG, 0.6, p_ok) for _ in range(1_000)]
    flaps, back = sum(r is None for r in res), [r for r in res if r is not None and r <= 100]
    assert flaps <= 15, flaps  # <= 1.5% of outages
    assert len(back) == 1_000 - flaps  # every healed route came back
    back.sort()
    assert back[len(back) // 2] <= 10 and back[int(0.9 * len(back))] <= 16, back[-20:]


# ---------------------------------------------------------------- in the monitor
def _demoted_monitor(cfg: RouteHealthConfig) -> tuple[HealthMonitor, int]:
    mon = HealthMonitor(MonitorConfig(route=cfg), clock=lambda: 0)
    for t in range(100):
        mon.observe_outcome("a", True, "NONE", t, 0.85)
    t = 1_000
    while not mon.is_demoted("a"):
        t += 1
        mon.observe_outcome("a", False, "ROUTE", t, 0.85)
    return mon, t


def test_probes_are_at_most_one_per_probe_min_requests_offered():
    """Low traffic: the schedule says due, but fewer than 50 requests could have carried a
    probe since the last one; each probe_due call is one such request."""
    mon, t = _demoted_monitor(RouteHealthConfig())
    assert mon.probe_due("a", t + MINUTE_MS)  # the first probe: at full speed
    mon.probe_sent("a", t + MINUTE_MS)
    mon.observe_outcome("a", False, "ROUTE", t + MINUTE_MS + 500, 0.85)  # it failed
    late = t + 60 * MINUTE_MS  # far past any wait
    due = [mon.probe_due("a", late) for _ in range(50)]
    assert due == [False] * 49 + [True]
    mon.probe_sent("a", late)
    assert not mon.probe_due("a", late + 60 * MINUTE_MS)  # one request since: not yet
    again = next(i for i in range(1, 200) if mon.probe_due("a", late + 60 * MINUTE_MS))
    assert again == 49  # 50 requests after the probe
    # a probe approved: the schedule alone until a probe fails again, no request count
    later = late + 60 * MINUTE_MS
    mon.probe_sent("a", later)
    mon.observe_outcome("a", True, "NONE", later + 1, 0.85)
    assert mon.probe_due("a", later + 30 * MINUTE_MS)
    mon.probe_sent("a", later + 30 * MINUTE_MS)
    mon.observe_outcome("a", False, "ROUTE", later + 30 * MINUTE_MS + 1, 0.85)
    assert not mon.probe_due("a", later + 90 * MINUTE_MS)  # failed: 50 requests again


def test_a_dead_routes_due_probe_waits_for_a_cheap_request():
    """While the route looks dead a due probe takes a request whose value at risk is in the
    recent offers' cheapest quarter, or the 21st offer after it fell due; once a probe comes
    back approved the schedule alone decides, whatever the request risks."""
    cfg = replace(RouteHealthConfig(), probe_min_requests=1)
    mon, t = _demoted_monitor(cfg)
    assert mon.probe_due("a", t + MINUTE_MS, 500.0)  # not dead yet (first wait): any request
    mon.probe_sent("a", t + MINUTE_MS)
    mon.observe_outcome("a", False, "ROUTE", t + MINUTE_MS + 500, 0.85)  # failed: looks dead
    now = t + MINUTE_MS + 30_000  # the doubled wait (1 min) not up: offers only teach costs
    costs = [100.0 + (i * 37) % 100 for i in range(50)]  # 100..199
    assert not any(mon.probe_due("a", now, c) for c in costs)
    late = now + 60 * MINUTE_MS  # due now
    dear = [mon.probe_due("a", late, 190.0) for _ in range(3)]  # above the cheapest quarter
    assert dear == [False] * 3
    assert mon.probe_due("a", late, 105.0)  # a cheap one: the probe goes
    mon.probe_sent("a", late)
    mon.observe_outcome("a", False, "ROUTE", late + 500, 0.85)
    # nothing cheap comes: the probe goes on the offer after its patience
    later = late + 60 * MINUTE_MS
    waited = [mon.probe_due("a", later, 1e6) for _ in range(cfg.probe_cost_patience + 1)]
    assert waited == [False] * cfg.probe_cost_patience + [True]
    mon.probe_sent("a", later)
    mon.observe_outcome("a", True, "NONE", later + 500, 0.85)  # approved: not dead any more
    assert mon.probe_due("a", later + 30 * MINUTE_MS, 1e6)  # the schedule alone
    # no value at risk given (drift_replay): the request count and the schedule alone
    mon.probe_sent("a", later + 30 * MINUTE_MS)
    mon.observe_outcome("a", False, "ROUTE", later + 30 * MINUTE_MS + 1, 0.85)
    assert mon.probe_due("a", later + 90 * MINUTE_MS)


def test_monitor_probe_due_and_probe_sent():
    """The time schedule alone (one request is enough)."""
    mon = HealthMonitor(MonitorConfig(route=replace(CFG, probe_min_requests=1)), clock=lambda: 0)
    assert not mon.probe_due("never-seen", 0)
    mon.probe_sent("never-seen", 0)  # nothing to record: no error, nothing created
    assert "never-seen" not in mon.routes
    for t in range(100):
        mon.observe_outcome("a", True, "NONE", t, 0.85)
    assert not mon.probe_due("a", 10 * MINUTE_MS)  # healthy routes are not probed
    t = 1_000
    while not mon.is_demoted("a"):
        t += 1
        mon.observe_outcome("a", False, "ROUTE", t, 0.85)
        assert t < 1_000 + CFG.window
    half = MINUTE_MS // 2
    assert not mon.probe_due("a", t + half - 1) and mon.probe_due("a", t + half)
    mon.probe_sent("a", t + half)
    assert not mon.probe_due("a", t + 2 * half - 1)
    # the probe fails: the next one waits twice as long from the send
    mon.observe_outcome("a", False, "ROUTE", t + half + 500, 0.85)
    assert not mon.probe_due("a", t + 3 * half - 1) and mon.probe_due("a", t + 3 * half)


def test_demoted_route_outcomes_do_not_feed_the_model_checks():
    mon = HealthMonitor(MonitorConfig(), clock=lambda: 0)
    for t in range(200):
        mon.observe_outcome("a", True, "NONE", t, 0.9)
    mon.routes["a"].demote(200)
    n = mon.drift.calibration.n
    for t in range(5_000):
        mon.observe_outcome("a", False, "ROUTE", 300 + t, 0.9, 0.9)
    assert mon.drift.calibration.n == n and mon.model_ok()


def test_calibration_is_checked_on_the_decisions_p_route_health_on_the_models():
    """The model says 0.5, the correction raised it to 0.9, every outcome approves: the
    calibration residual is 1 - 0.9 (the p that decided), route health expects 0.5 (the
    model's own p) and sees no collapse."""
    mon = HealthMonitor(MonitorConfig(), clock=lambda: 0)
    for t in range(50):
        assert mon.observe_outcome("a", True, "NONE", t, 0.5, 0.9) == []
    assert mon.drift.calibration.n == 50
    assert mon.drift.calibration.mean == pytest.approx(0.1)
    r = mon.routes["a"]
    assert r.last_window is not None and r.last_window[2] == pytest.approx(0.5)
    mon.observe_outcome("a", True, "NONE", 50, 0.5)  # no decision p: the model's
    assert mon.drift.calibration.mean == pytest.approx((50 * 0.1 + 0.5) / 51)


def test_the_baseline_does_not_learn_the_outcomes_it_is_judging():
    """Outcomes join the failure baseline only once out of the 20-outcome window: an outage's
    first failures must not raise the baseline they are tested against."""
    rh = RouteHealth(CFG)
    _healthy(rh, 100)
    for ok, fail in [(False, True), (True, False), (True, False), (False, True)]:
        assert not rh.observe_healthy(ok, fail, 0.85)
    # learned: the 84 that left the window, all healthy; the two failures are still in it
    assert rh.base_n == 104 - CFG.window and rh.base_fail == 0
    for _ in range(CFG.window - 1):
        assert not rh.observe_healthy(True, False, 0.85)
    assert rh.base_fail == 1  # the first failure has left the window: now it is baseline


def test_a_short_healthy_history_still_demotes_within_one_window():
    """60 healthy outcomes at 0.4% (a route with a small share of the traffic), then 60%
    route failures: with the baseline learning at once, 11% of draws took over 20 attempts
    (baseline 5.6% at the trip); `python -m app.bench.route_demotion` gives the figures."""
    rng = np.random.default_rng(3)
    res = [attempts_to_demote(rng, 60, 0.004, 0.6, 0.25 / 0.4, 0.81, CFG) for _ in range(400)]
    assert all(r is not None for r in res)
    over = sum(r[0] > CFG.window for r in res if r is not None)
    assert over <= 4, over  # measured 0.07% of 3,000 draws; 11% before
