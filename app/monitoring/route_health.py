"""Route and model health: pure state machines driven by the drift detectors, emitting alerts.

Route, per route id:

    HEALTHY --(route_failure up or route_approval down alarm)--> DEMOTED     ROUTE_DEMOTED
    DEMOTED --(a window of `probe_window` probe outcomes recovers)--> HEALTHY ROUTE_RESTORED

A demoted route stays eligible for exploration only: the score agent drops it from exploitation
but keeps it among the routes its epsilon-exploration draws from, so it still sees a small
probe share (epsilon / K of its merchants' traffic; 2.5% with epsilon 0.1 and 4 routes) and
recovery can be observed. If every candidate of a request is demoted, the agent ignores
demotions for that request. Every outcome on a demoted route is a probe outcome (including
in-flight ones sent before the demotion). A window recovers when its route-failure rate is at
most baseline + `failure_margin` (baseline = the route's failure rate while it was healthy,
shrunk towards a prior) and, when the caller passes the model's p_approve, its approval rate is
at most `approval_margin` under the mean p (the model's p corrects for the probe traffic mix,
which is not the route's usual mix). On restore the route's detectors start a fresh baseline.

Model:

    OK --(score or calibration alarm)--> FALLBACK            SCORE_DRIFT / CALIBRATION_DRIFT,
                                                             MODEL_FALLBACK
    FALLBACK --(cooldown elapsed and |mean(y - p)| <= tolerance
                over a window of `calibration_window` outcomes)--> OK     MODEL_RESTORED

In FALLBACK the agent routes by success rate but keeps scoring in shadow and passes the
model's p with each outcome so calibration can be seen to come back. Outcomes on demoted
routes never feed the model's checks: the route explains them, not the model.

Feature alarms (FEATURE_DRIFT) are informational and change no state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.monitoring.drift import Alarm, DriftConfig, DriftMonitor

ALERT_KINDS = (
    "ROUTE_DEMOTED",
    "ROUTE_RESTORED",
    "MODEL_FALLBACK",
    "MODEL_RESTORED",
    "FEATURE_DRIFT",
    "SCORE_DRIFT",
    "CALIBRATION_DRIFT",
)


class RouteState(StrEnum):
    HEALTHY = "HEALTHY"
    DEMOTED = "DEMOTED"


class ModelState(StrEnum):
    OK = "OK"
    FALLBACK = "FALLBACK"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RouteHealthConfig:
    """Recovery rule of a demoted route.

    100 probes: a healthy route (failure rate <= 1%) passes a 0.05 margin unless >= 6 of 100
    fail (P ~ 1e-4 at 0.8%); an outage at 60% never does. Approval has a wider margin
    (binomial noise on 100 is ~4 points).
    """

    probe_window: int = 100
    failure_margin: float = 0.05
    approval_margin: float = 0.15
    prior_failure_rate: float = 0.01
    prior_samples: int = 100


@dataclass(frozen=True)
class ModelHealthConfig:
    """Recovery rule of the model: cool-down in event time, then calibration back in range.

    The tolerance is half the calibration detector's delta (0.03), so a model restored while
    still biased by 0.02-0.03 (seen in replays with 0.03) cannot re-baseline the detector on
    the bias; 4000 outcomes put the mean residual's standard error near 0.005, so a calibrated
    model passes a window with ~3 standard errors to spare.
    """

    cooldown_ms: int = 30 * 60_000
    calibration_window: int = 4000
    calibration_tolerance: float = 0.015


@dataclass(frozen=True)
class MonitorConfig:
    drift: DriftConfig = field(default_factory=DriftConfig)
    route: RouteHealthConfig = field(default_factory=RouteHealthConfig)
    model: ModelHealthConfig = field(default_factory=ModelHealthConfig)
    # How long a score/calibration/feature alarm counts as "raised" for the gauges.
    alarm_hold_ms: int = 60 * 60_000


class RouteHealth:
    """The state machine of one route (no detectors inside: they decide when to demote)."""

    __slots__ = ("_p", "_y", "base_fail", "base_n", "cfg", "demoted_at", "last_window",
                 "probe_fail", "probe_n", "probe_np", "state")  # fmt: skip

    def __init__(self, cfg: RouteHealthConfig) -> None:
        self.cfg = cfg
        self.state = RouteState.HEALTHY
        self.base_n = 0
        self.base_fail = 0
        self.demoted_at: int | None = None
        self.last_window: tuple[float, float, float | None] | None = None
        self._reset_window()

    def _reset_window(self) -> None:
        self.probe_n = self.probe_fail = self.probe_np = 0
        self._y = self._p = 0.0

    @property
    def baseline_failure_rate(self) -> float:
        c = self.cfg
        return (self.base_fail + c.prior_failure_rate * c.prior_samples) / (
            self.base_n + c.prior_samples
        )

    def observe_healthy(self, route_failure: bool) -> None:
        self.base_n += 1
        self.base_fail += route_failure

    def demote(self, event_time: int) -> None:
        self.state = RouteState.DEMOTED
        self.demoted_at = event_time
        self._reset_window()

    def observe_probe(self, approved: bool, route_failure: bool, p: float | None) -> bool:
        """Count one probe outcome; True when it completes a window that recovers."""
        self.probe_n += 1
        self.probe_fail += route_failure
        self._y += approved
        if p is not None:
            self.probe_np += 1
            self._p += p
        if self.probe_n < self.cfg.probe_window:
            return False
        fail_rate = self.probe_fail / self.probe_n
        approval = self._y / self.probe_n
        mean_p = self._p / self.probe_np if self.probe_np else None
        self.last_window = (fail_rate, approval, mean_p)
        self._reset_window()
        ok = fail_rate <= self.baseline_failure_rate + self.cfg.failure_margin
        if mean_p is not None:
            ok = ok and approval >= mean_p - self.cfg.approval_margin
        if ok:
            self.state = RouteState.HEALTHY
            self.demoted_at = None
        return ok


class ModelHealth:
    """OK / FALLBACK of the serving model."""

    __slots__ = ("_n", "_sum", "cfg", "fallback_at", "last_residual", "state")

    def __init__(self, cfg: ModelHealthConfig) -> None:
        self.cfg = cfg
        self.state = ModelState.OK
        self.fallback_at: int | None = None
        self.last_residual: float | None = None
        self._n = 0
        self._sum = 0.0

    def fall_back(self, event_time: int) -> None:
        self.state = ModelState.FALLBACK
        self.fallback_at = event_time
        self._n = 0
        self._sum = 0.0

    def observe(self, residual: float, event_time: int) -> bool:
        """Count one shadow residual y - p in FALLBACK; True when the model is restored."""
        self._n += 1
        self._sum += residual
        if self._n < self.cfg.calibration_window:
            return False
        self.last_residual = self._sum / self._n
        self._n = 0
        self._sum = 0.0
        assert self.fallback_at is not None
        if (
            event_time - self.fallback_at >= self.cfg.cooldown_ms
            and abs(self.last_residual) <= self.cfg.calibration_tolerance
        ):
            self.state = ModelState.OK
            self.fallback_at = None
            return True
        return False


_SIGNAL_KIND = {"score": "SCORE_DRIFT", "calibration": "CALIBRATION_DRIFT"}


class HealthMonitor:
    """What the score and outcome agents call: one per worker, single-threaded, pure.

    Per outcome: `observe_outcome(...)`; per decision: `observe_decision(...)`; both return the
    alerts (Alert.avsc-shaped dicts) that update raised, usually none. Read `is_demoted(route)`
    and `model_ok()` before each decision. State lives in memory: after a restart detectors
    re-learn their baselines (min_instances samples) and demotions are re-detected.
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        model_version: str = "model",
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.config = config or MonitorConfig()
        self.model_version = model_version
        self.drift = DriftMonitor(self.config.drift, model_version)
        self.routes: dict[str, RouteHealth] = {}
        self.model = ModelHealth(self.config.model)
        self._clock = clock
        self._raised: dict[tuple[str, str], int] = {}
        # read on every decision: kept up to date on demote/restore instead of rebuilt per read
        self._demoted: frozenset[str] = frozenset()

    # ------------------------------------------------------------ what the policy reads
    def is_demoted(self, route_id: str) -> bool:
        r = self.routes.get(route_id)
        return r is not None and r.state is RouteState.DEMOTED

    def model_ok(self) -> bool:
        return self.model.state is ModelState.OK

    @property
    def demoted(self) -> frozenset[str]:
        return self._demoted

    # ------------------------------------------------------------ updates
    def observe_outcome(
        self,
        route_id: str,
        approved: bool,
        failure_side: str,
        event_time: int,
        p_approve: float | None = None,
    ) -> list[dict[str, Any]]:
        """One AuthorizationOutcome; p_approve = the model's estimate for the route taken."""
        alerts: list[dict[str, Any]] = []
        route_failure = failure_side == "ROUTE"
        rh = self.routes.get(route_id)
        if rh is None:
            rh = self.routes[route_id] = RouteHealth(self.config.route)
        if rh.state is RouteState.DEMOTED:
            if rh.observe_probe(approved, route_failure, p_approve):
                self._demoted = self._demoted - {route_id}
                self.drift.route(route_id).reset()
                fail, appr, mean_p = rh.last_window or (0.0, 0.0, None)
                extra = "" if mean_p is None else f", approval {appr:.3f} vs model {mean_p:.3f}"
                alerts.append(self._alert(
                    "ROUTE_RESTORED", route_id, f"probe_window(n={rh.cfg.probe_window})",
                    fail, rh.baseline_failure_rate, event_time,
                    f"{route_id} restored: probe route-failure rate {fail:.3f}{extra}",
                ))  # fmt: skip
            return alerts
        rh.observe_healthy(route_failure)
        alarm = self.drift.update_route(route_id, approved, route_failure)
        if alarm is not None:
            rh.demote(event_time)
            self._demoted = self._demoted | {route_id}
            alerts.append(self._from_alarm("ROUTE_DEMOTED", alarm, event_time))
        if p_approve is not None:
            if self.model.state is ModelState.OK:
                a = self.drift.update_calibration(p_approve, approved)
                if a is not None:
                    alerts += self._model_alarm(a, event_time)
            elif self.model.observe((1.0 if approved else 0.0) - p_approve, event_time):
                self.drift.reset_model()
                res = self.model.last_residual or 0.0
                alerts.append(self._alert(
                    "MODEL_RESTORED", self.model_version,
                    f"calibration_window(n={self.model.cfg.calibration_window})", res, 0.0,
                    event_time, f"model {self.model_version} restored: mean y - p {res:+.4f}",
                ))  # fmt: skip
        return alerts

    def observe_outcome_record(
        self, rec: Mapping[str, Any], p_approve: float | None = None
    ) -> list[dict[str, Any]]:
        """observe_outcome on an AuthorizationOutcome dict."""
        return self.observe_outcome(
            rec["route_id"], rec["approved"], rec["failure_side"], rec["event_time"], p_approve
        )

    def observe_decision(
        self,
        event_time: int,
        p_chosen: float | None,
        amount_minor: float,
        cross_border: bool,
        sca_required: bool,
    ) -> list[dict[str, Any]]:
        """One decision: request features, and the model's p for the chosen route (None when
        no model scored). cross_border = merchant country != issuer country."""
        alerts = [
            self._from_alarm("FEATURE_DRIFT", a, event_time)
            for a in self.drift.update_features(amount_minor, cross_border, sca_required)
        ]
        if p_chosen is not None and self.model.state is ModelState.OK:
            a = self.drift.update_score(p_chosen)
            if a is not None:
                alerts += self._model_alarm(a, event_time)
        return alerts

    def set_model(self, model_version: str) -> None:
        """A new model is served: fresh model detectors and state."""
        self.model_version = model_version
        self.drift.score.subject = self.drift.calibration.subject = model_version
        self.drift.reset_model()
        self.model = ModelHealth(self.config.model)

    def alarm_levels(self, event_time: int) -> dict[tuple[str, str], int]:
        """(detector, target) -> 0/1 for the authpilot_drift_alarm gauge: demotions and the
        fallback while they last, other alarms for `alarm_hold_ms` after they fired."""
        hold = self.config.alarm_hold_ms
        out = {k: int(event_time - t < hold) for k, t in self._raised.items()}
        for route_id, r in self.routes.items():
            out[("route_health", route_id)] = int(r.state is RouteState.DEMOTED)
        out[("model_health", self.model_version)] = int(not self.model_ok())
        return out

    # ------------------------------------------------------------ alerts
    def _model_alarm(self, a: Alarm, event_time: int) -> list[dict[str, Any]]:
        self.model.fall_back(event_time)
        return [
            self._from_alarm(_SIGNAL_KIND[a.signal], a, event_time),
            self._alert(
                "MODEL_FALLBACK", self.model_version, a.detector, a.value, a.baseline,
                event_time, f"model {self.model_version} -> success-rate fallback: {a.signal} "
                f"{a.direction} ({a.baseline:.4f} -> {a.value:.4f})",
            ),
        ]  # fmt: skip

    def _from_alarm(self, kind: str, a: Alarm, event_time: int) -> dict[str, Any]:
        self._raised[(a.signal, a.subject)] = event_time
        msg = (
            f"{a.signal} {a.direction} on {a.subject}: {a.baseline:.4f} -> {a.value:.4f} "
            f"after {a.samples} samples"
        )
        return self._alert(kind, a.subject, a.detector, a.value, a.baseline, event_time, msg)

    def _alert(
        self,
        kind: str,
        subject: str,
        detector: str,
        value: float,
        baseline: float,
        event_time: int,
        message: str,
    ) -> dict[str, Any]:
        return {
            "alert_id": f"{kind}:{subject}:{event_time}",
            "kind": kind,
            "subject": subject,
            "detector": detector,
            "value": float(value),
            "baseline": float(baseline),
            "event_time": int(event_time),
            "raised_at": self._clock(),
            "message": message,
        }
