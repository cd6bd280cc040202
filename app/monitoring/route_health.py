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
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RouteState(StrEnum):
    HEALTHY = "HEALTHY"
    DEMOTED = "DEMOTED"


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
