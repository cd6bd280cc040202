"""HealthMonitor: the drift detectors wired to the route and model state machines, emitting
alerts (schemas/Alert.avsc). Pure: no Kafka; the worker's agents call it per decision and per
outcome. Feature alarms (FEATURE_DRIFT) are informational and change no state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.contracts import vocab
from app.monitoring.drift import Alarm, DriftConfig, DriftMonitor
from app.monitoring.model_health import ModelHealth, ModelHealthConfig, ModelState
from app.monitoring.route_health import RouteHealth, RouteHealthConfig, RouteState

# What the monitor emits: the schema's AlertKind symbols but OTHER (a reader's fallback).
ALERT_KINDS = tuple(k for k in vocab.ALERT_KINDS if k != "OTHER")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class MonitorConfig:
    drift: DriftConfig = field(default_factory=DriftConfig)
    route: RouteHealthConfig = field(default_factory=RouteHealthConfig)
    model: ModelHealthConfig = field(default_factory=ModelHealthConfig)
    # How long a score/calibration/feature alarm counts as "raised" for the gauges.
    alarm_hold_ms: int = 60 * vocab.MINUTE_MS


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

    def probe_due(self, route_id: str, event_time: int, at_risk: float | None = None) -> bool:
        """Asked once per request that has the demoted route as a candidate (it counts the
        request): due when the route's probe schedule says so (RouteHealth.probe_due) and,
        while the route still looks dead (its last probe not approved and its wait above the
        minimum), at least `probe_min_requests` such requests went elsewhere since the last
        probe, and the request is a cheap one: `at_risk` (its amount x the p of where it would
        go otherwise) in the recent offers' cheapest `probe_cost_quantile`, or the probe waited
        `probe_cost_patience` offers (None: any request will do). A failing route's probes stay
        under ~1 / probe_min_requests of its traffic at any rate and take the requests that
        risk least; a route whose last probe came back approved is probed on the schedule
        alone (requiring two approvals in a row left healed routes 60-129 simulated min
        demoted at ~175 payments an hour, drift_replay seeds 4-10)."""
        r = self.routes.get(route_id)
        if r is None:
            return False
        r.offers += 1
        if not r.looks_dead():
            return r.probe_due(event_time)
        due = r.offers >= r.cfg.probe_min_requests and r.probe_due(event_time)
        return due if at_risk is None else r.cheap(at_risk, due)

    def probe_sent(self, route_id: str, event_time: int) -> None:
        r = self.routes.get(route_id)
        if r is not None:
            r.last_probe = event_time
            r.offers = r.waited = 0

    # ------------------------------------------------------------ updates
    def observe_outcome(
        self,
        route_id: str,
        approved: bool,
        failure_side: str,
        event_time: int,
        p_approve: float | None = None,
        p_decision: float | None = None,
    ) -> list[dict[str, Any]]:
        """One AuthorizationOutcome. p_approve = the model's own estimate for the route taken
        (route health compares the route with it); p_decision = the estimate the decision used
        (the model's, corrected online: the model's calibration is checked on it, since that
        is what decides; default p_approve)."""
        alerts: list[dict[str, Any]] = []
        route_failure = failure_side == "ROUTE"
        rh = self.routes.get(route_id)
        if rh is None:
            rh = self.routes[route_id] = RouteHealth(self.config.route)
        cfg = rh.cfg
        if rh.state is RouteState.DEMOTED:
            if rh.observe_probe(approved, route_failure, p_approve):
                self._demoted = self._demoted - {route_id}
                fail, appr, expected = rh.last_window or (0.0, 0.0, 0.0)
                alerts.append(self._alert(
                    "ROUTE_RESTORED", route_id, f"probe_window(n={cfg.probe_window})",
                    fail, rh.baseline_failure_rate, event_time,
                    f"{route_id} restored: last {cfg.probe_window} probes route-failure rate "
                    f"{fail:.3f}, approval {appr:.3f} vs expected {expected:.3f}",
                ))  # fmt: skip
            return alerts
        if rh.observe_healthy(approved, route_failure, p_approve):
            rh.demote(event_time)
            self._demoted = self._demoted | {route_id}
            fail, appr, expected = rh.last_window or (0.0, 0.0, 0.0)
            signal = rh.cause or "route_approval"
            self._raised[(signal, route_id)] = event_time
            alerts.append(self._alert(
                "ROUTE_DEMOTED", route_id, f"{signal}:window(n={rh.cause_window})",
                fail if signal == "route_failure" else appr,
                rh.baseline_failure_rate if signal == "route_failure" else expected, event_time,
                f"{route_id} demoted: last {rh.cause_window} outcomes route-failure rate "
                f"{fail:.3f} (baseline {rh.baseline_failure_rate:.3f}), approval {appr:.3f} vs "
                f"expected {expected:.3f}",
            ))  # fmt: skip
            return alerts
        pc = p_decision if p_decision is not None else p_approve
        if pc is not None:
            if self.model.state is ModelState.OK:
                a = self.drift.update_calibration(pc, approved)
                if a is not None:
                    alerts += self._model_alarm(a, event_time)
            elif self.model.observe((1.0 if approved else 0.0) - pc, event_time):
                self.drift.reset_model()
                res = self.model.last_residual or 0.0
                alerts.append(self._alert(
                    "MODEL_RESTORED", self.model_version,
                    f"calibration_window(n={self.model.cfg.calibration_window})", res, 0.0,
                    event_time, f"model {self.model_version} restored: mean y - p {res:+.4f}",
                ))  # fmt: skip
        return alerts

    def observe_outcome_record(
        self, rec: Mapping[str, Any], p_approve: float | None = None,
        p_decision: float | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """observe_outcome on an AuthorizationOutcome dict."""
        return self.observe_outcome(rec["route_id"], rec["approved"], rec["failure_side"],
                                    rec["event_time"], p_approve, p_decision)  # fmt: skip

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
            if a is not None:  # informational: the routes moving move the chosen p (model_health)
                alerts.append(self._from_alarm("SCORE_DRIFT", a, event_time))
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
            self._from_alarm("CALIBRATION_DRIFT", a, event_time),
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
