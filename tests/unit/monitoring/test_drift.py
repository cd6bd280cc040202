"""Drift detectors and route/model health, on seeded synthetic streams and simulated traffic.

Simulated figures (python -m app.bench.drift_replay): zero alerts over 1M steady attempts per
seed; acq-de demoted 15-22 attempts (8-12 simulated minutes) into its outage, restored
1.5-2.5 h after it ends.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.bench.drift_replay import CalibrationShift, bench_update, outage_report, replay
from app.contracts.vocab import DAY_MS
from app.monitoring import (
    DriftConfig,
    HealthMonitor,
    ModelState,
    MonitorConfig,
    PHSpec,
    RouteHealthConfig,
    RouteState,
    Signal,
)
from app.monitoring.model_health import ModelHealth, ModelHealthConfig
from app.monitoring.route_health import RouteHealth
from app.sim.world import RouteOutage

SPECS = [f.name for f in dataclasses.fields(DriftConfig)]
HOUR = 3_600_000


# ---------------------------------------------------------------- detectors
@pytest.mark.parametrize("name", SPECS)
def test_every_default_detector_is_a_non_fading_page_hinkley(name):
    spec = getattr(DriftConfig(), name)
    det = spec.build()
    assert det.alpha == 1.0  # fading sums with unfaded min/max alarm on stationary data
    assert spec.delta > 0 and spec.threshold > 0
    sig = Signal(name, "s", spec)
    assert all(sig.update(0.5) is None for _ in range(5_000))  # a constant never alarms


def test_signal_detects_a_route_failure_jump_within_tens_of_samples():
    rng = np.random.default_rng(7)
    sig = Signal("route_failure", "acq-de", DriftConfig().route_failure)
    before = (rng.random(20_000) < 0.005).astype(float)
    assert all(sig.update(x) is None for x in before)
    after = (rng.random(1_000) < 0.6).astype(float)
    hit = next(i for i, x in enumerate(after) if sig.update(x) is not None)
    assert hit <= 40
    assert sig.n == 0  # restarted: the new level becomes the next baseline


def test_alarm_reports_direction_value_and_baseline():
    sig = Signal("score", "m", PHSpec(0.05, 5.0, "both", min_instances=10, recent=5))
    for _ in range(200):
        assert sig.update(0.8) is None
    alarm = next(a for a in (sig.update(0.5) for _ in range(100)) if a is not None)
    assert alarm.direction == "down"
    assert alarm.value < alarm.baseline
    # the baseline is the mean since the last reset, excursion included (14 samples of 0.5)
    assert alarm.baseline == pytest.approx(0.77, abs=0.01)
    assert alarm.detector == "score:PageHinkley(both,delta=0.05,threshold=5)"


def test_update_is_cheap():
    assert bench_update(50_000) < 10.0  # ~1 us measured; generous for a busy CI box


# ---------------------------------------------------------------- route state machine
def test_route_health_demote_probe_windows_restore():
    rh = RouteHealth(RouteHealthConfig(probe_window=10, failure_margin=0.05))
    for i in range(1_000):
        rh.observe_healthy(i % 200 == 0)  # 0.5% failures
    assert rh.baseline_failure_rate == pytest.approx((5 + 1) / 1_100)
    rh.demote(123)
    assert rh.state is RouteState.DEMOTED and rh.demoted_at == 123
    # a window with 6 failures out of 10 keeps it demoted
    assert not any(rh.observe_probe(False, i < 6, None) for i in range(10))
    assert rh.state is RouteState.DEMOTED and rh.last_window == (0.6, 0.0, None)
    # a clean window restores it
    assert [rh.observe_probe(True, False, None) for _ in range(10)][-1] is True
    assert rh.state is RouteState.HEALTHY and rh.demoted_at is None


def test_route_recovery_needs_approvals_near_the_model_when_p_is_given():
    rh = RouteHealth(RouteHealthConfig(probe_window=10, approval_margin=0.15))
    rh.demote(0)
    # no route failures but 3/10 approved where the model expects 0.9: not recovered
    assert not any(rh.observe_probe(i < 3, False, 0.9) for i in range(10))
    assert rh.state is RouteState.DEMOTED
    assert [rh.observe_probe(i < 8, False, 0.9) for i in range(10)][-1] is True


def _monitor(**route_kw) -> HealthMonitor:
    cfg = MonitorConfig(
        drift=DriftConfig(route_failure=PHSpec(0.05, 3.0, "up", min_instances=20, recent=5)),
        route=RouteHealthConfig(probe_window=20, **route_kw),
    )
    return HealthMonitor(cfg, model_version="m/1", clock=lambda: 7)


def test_monitor_demotes_only_the_failing_route_and_restores_it_on_probes():
    mon = _monitor()
    t = 0
    for _ in range(500):
        for r in ("a", "b"):
            t += 1
            assert mon.observe_outcome(r, True, "NONE", t) == []
    alerts = []
    while not alerts:  # failures on a until its detector fires; b keeps approving
        t += 1
        alerts += mon.observe_outcome("a", False, "ROUTE", t)
        mon.observe_outcome("b", True, "NONE", t)
        assert t < 1_100
    assert [a["kind"] for a in alerts] == ["ROUTE_DEMOTED"]
    assert alerts[0]["subject"] == "a" and alerts[0]["value"] > alerts[0]["baseline"]
    assert mon.is_demoted("a") and not mon.is_demoted("b") and mon.demoted == {"a"}
    assert not mon.is_demoted("never-seen")
    # probes still failing: no restore; recovered probes: restored, detectors re-baselined
    assert all(mon.observe_outcome("a", False, "ROUTE", t + i) == [] for i in range(20))
    out = [a for i in range(20) for a in mon.observe_outcome("a", True, "NONE", t + 100 + i)]
    assert [a["kind"] for a in out] == ["ROUTE_RESTORED"]
    assert not mon.is_demoted("a") and mon.demoted == frozenset()
    assert mon.drift.route("a").failure.n == 0


def test_issuer_declines_and_approval_wobbles_do_not_demote():
    mon = _monitor()
    rng = np.random.default_rng(3)
    for t, u in enumerate(rng.random(20_000)):
        # approval swings between 90% and 75% every 2000 outcomes, route failures stay at 0.5%
        p = 0.9 if (t // 2000) % 2 == 0 else 0.75
        side = "ROUTE" if u < 0.005 else ("NONE" if u < p else "ISSUER")
        assert mon.observe_outcome("a", side == "NONE", side, t) == []


# ---------------------------------------------------------------- model state machine
def test_model_health_waits_for_cooldown_and_calibration():
    mh = ModelHealth(ModelHealthConfig(cooldown_ms=HOUR, calibration_window=10,
                                       calibration_tolerance=0.015))  # fmt: skip
    mh.fall_back(0)
    assert not any(mh.observe(0.0, 1_000) for _ in range(10))  # calibrated, but cooling down
    assert not any(mh.observe(0.1, HOUR) for _ in range(10))  # cooled down, still biased
    assert mh.state is ModelState.FALLBACK and mh.last_residual == pytest.approx(0.1)
    assert [mh.observe(0.01, HOUR + 1) for _ in range(10)][-1] is True
    assert mh.state is ModelState.OK


def _stream(n: int, bias: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.clip(rng.beta(8, 1.5, n), 0.01, 0.99)  # scores near the simulator's (mean ~0.85)
    y = rng.random(n) < np.clip(p + bias, 0.0, 1.0)
    return p, y


def _feed(mon: HealthMonitor, p: np.ndarray, y: np.ndarray, t0: int, step: int) -> list[dict]:
    out = []
    for i, (pi, yi) in enumerate(zip(p.tolist(), y.tolist(), strict=True)):
        t = t0 + i * step
        out += mon.observe_decision(t, pi, 2_500.0, False, False)
        out += mon.observe_outcome("a", yi, "NONE" if yi else "ISSUER", t, pi)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_calibration_shift_triggers_fallback_and_restores(seed):
    """Scores unchanged, outcomes 10 points worse: only calibration can see it."""
    mon = HealthMonitor(model_version="m/1", clock=lambda: 0)
    p, y = _stream(100_000, 0.0, seed)
    assert _feed(mon, p, y, 0, 1_000) == []  # steady: nothing
    p, y = _stream(20_000, -0.10, seed + 100)
    t0 = 100_000 * 1_000
    alerts = _feed(mon, p, y, t0, 1_000)
    kinds = [a["kind"] for a in alerts]
    assert kinds[:2] == ["CALIBRATION_DRIFT", "MODEL_FALLBACK"]
    assert (alerts[0]["event_time"] - t0) // 1_000 < 2_000  # outcomes after the shift
    assert not mon.model_ok() and "MODEL_RESTORED" not in kinds
    assert mon.alarm_levels(alerts[0]["event_time"])[("model_health", "m/1")] == 1
    # calibration back: restored after the cool-down, on a whole in-range window
    p, y = _stream(20_000, 0.0, seed + 200)
    t1 = t0 + 20_000 * 1_000
    back = _feed(mon, p, y, t1, 1_000)
    assert [a["kind"] for a in back] == ["MODEL_RESTORED"]
    assert mon.model_ok()


def test_demoted_route_outcomes_do_not_feed_the_model_checks():
    mon = _monitor()
    for t in range(200):
        mon.observe_outcome("a", True, "NONE", t, 0.9)
    mon.routes["a"].demote(200)
    n = mon.drift.calibration.n
    for t in range(5_000):
        mon.observe_outcome("a", False, "ROUTE", 300 + t, 0.9)
    assert mon.drift.calibration.n == n and mon.model_ok()


def test_feature_drift_alerts_but_changes_no_state():
    mon = HealthMonitor(clock=lambda: 0)
    rng = np.random.default_rng(5)
    alerts = []
    for t in range(20_000):
        cross_border = rng.random() < (0.25 if t < 10_000 else 0.6)
        alerts += mon.observe_decision(t, None, 3_000.0, cross_border, False)
    assert [(a["kind"], a["subject"]) for a in alerts] == [("FEATURE_DRIFT", "cross_border")]
    assert mon.model_ok() and not mon.demoted
    levels = mon.alarm_levels(alerts[0]["event_time"] + 1)
    assert levels[("cross_border", "cross_border")] == 1
    assert (
        mon.alarm_levels(alerts[0]["event_time"] + 2 * HOUR)[("cross_border", "cross_border")] == 0
    )


def test_set_model_starts_fresh():
    mon = HealthMonitor(model_version="m/1", clock=lambda: 0)
    mon.model.fall_back(0)
    mon.set_model("m/2")
    assert mon.model_ok() and mon.drift.score.subject == "m/2" and mon.drift.score.n == 0


# ---------------------------------------------------------------- simulated traffic
def _steady_zero_alarms(seed: int, attempts: int) -> None:
    res = replay("steady", attempts, seed)
    assert res.attempts == attempts
    assert res.alerts == []


def test_steady_million_attempts_zero_alarms():
    _steady_zero_alarms(1, 1_000_000)  # ~20 s


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_steady_million_attempts_zero_alarms_more_seeds(seed):
    _steady_zero_alarms(seed, 1_000_000)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_acquirer_outage_demotes_only_acq_de_quickly_and_restores_it(seed):
    res = replay("acquirer_outage", 1_000_000, seed, days=(7, 12))
    w = res.world
    (outage,) = [e for e in w.events if isinstance(e, RouteOutage)]
    start = w.start_ms + int(outage.start_day * DAY_MS)
    end = w.start_ms + int(outage.end_day * DAY_MS)
    kinds = {(a["kind"], a["subject"]) for a in res.alerts}
    assert kinds == {("ROUTE_DEMOTED", "acq-de"), ("ROUTE_RESTORED", "acq-de")}, kinds
    (dem,) = res.of_kind("ROUTE_DEMOTED")
    (rest,) = res.of_kind("ROUTE_RESTORED")
    delay = res.attempts_on("acq-de", start, dem["event_time"])
    assert start <= dem["event_time"] and delay <= 60  # measured 17, 20, 22 for seeds 1-3
    assert dem["event_time"] - start <= HOUR
    assert end <= rest["event_time"] <= end + 6 * HOUR  # measured 1.8-2.2 h
    print(outage_report(res))


@pytest.mark.parametrize("seed", [1, 2])
def test_model_bias_in_simulated_traffic_falls_back_then_restores(seed):
    shift = CalibrationShift(10.0, 11.0, -0.6)  # the model under-estimates by 0.6 logit
    res = replay("steady", 1_000_000, seed, days=(8, 14), calibration_shift=shift)
    w = res.world
    t0, t1 = (w.start_ms + int(d * DAY_MS) for d in (shift.start_day, shift.end_day))
    kinds = [a["kind"] for a in res.alerts]
    assert kinds[1:] == ["MODEL_FALLBACK", "MODEL_RESTORED"]
    assert kinds[0] in ("CALIBRATION_DRIFT", "SCORE_DRIFT")
    fb, back = res.alerts[1], res.alerts[2]
    assert (
        t0 <= fb["event_time"] and ((res.t_ms >= t0) & (res.t_ms <= fb["event_time"])).sum() < 5_000
    )
    assert t1 <= back["event_time"] <= t1 + 12 * HOUR


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["holiday_surge", "issuer_shift", "new_bin_range"])
def test_no_route_is_demoted_in_scenarios_without_route_faults(scenario):
    res = replay(scenario, 1_000_000, 1)
    assert not res.of_kind("ROUTE_DEMOTED")
