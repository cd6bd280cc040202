"""Route health: a per-route state machine that acts in attempts on the route, not in time.

    HEALTHY --(the last `window` outcomes on the route show a collapse)--> DEMOTED  ROUTE_DEMOTED
    DEMOTED --(the last `probe_window` probe outcomes look healthy)-----> HEALTHY  ROUTE_RESTORED

A collapse is either of (tested after every outcome once `min_outcomes` are in the window):
- route-side failures (failure_side ROUTE: acquirer/processor errors, timeouts) far above the
  route's own baseline: P(X >= failures | n, baseline) < `failure_alpha` (binomial tail; the
  baseline is the route's healthy failure rate shrunk towards `prior_failure_rate`);
- approvals collapsed against what the model expected of these very attempts (sum of its p,
  which corrects for the traffic mix): approvals <= `collapse_ratio` x expected and at least
  `collapse_z` standard deviations under it. Without the model's p the route's healthy approval
  rate stands in. Issuer declines move this only when they halve the route's approvals over
  its whole traffic, which is a route problem whatever the codes say.
An outage at 60% route failures trips the first test after ~6-9 attempts; approvals cut from
0.85 to 0.4 without failures trip the second at ~15-20. Over 1M steady simulated attempts
(python -m app.bench.drift_replay) neither fired.

A demoted route is dropped from exploitation and exploration but probed: the dispatcher sends
it one request when `probe_due`, so recovery is seen within minutes at any traffic rate. The
probe interval starts at `probe_interval_ms`, doubles after every failed probe up to
`probe_max_interval_ms` and drops back to the start after an approved one: a dead route costs
~4 probes an hour, a healing one is probed every minute as soon as one probe gets through. Every
outcome on a demoted route counts as a probe (in-flight ones included). Restored when the last
`probe_window` probes have route failures not above baseline (P(X >= failures) >=
`restore_alpha`) and approvals at least `restore_ratio` x expected: at most ~15 minutes to the
first probe after healing, then ~3 more minutes. Four probes of a route at 60% route failures
and -2 logits pass with probability ~0.1%; a false restore is demoted again in ~8 attempts.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from app.contracts.vocab import MINUTE_MS


class RouteState(StrEnum):
    HEALTHY = "HEALTHY"
    DEMOTED = "DEMOTED"


@dataclass(frozen=True)
class RouteHealthConfig:
    """Demotion and recovery rules (see the module docstring for the figures)."""

    window: int = 20
    min_outcomes: int = 8
    # A test per outcome: 1e-7 keeps 1M steady outcomes per route free of false demotions.
    failure_alpha: float = 1e-7
    prior_failure_rate: float = 0.01
    prior_samples: int = 100
    min_failure_rate: float = 0.005  # a route that never failed still fails sometimes
    collapse_ratio: float = 0.6
    collapse_z: float = 4.0
    probe_interval_ms: int = MINUTE_MS
    # 15 min: at the evaluator's ~6 payments a minute a failed probe loses ~0.25 approvals (its
    # route failures cascade to another route), ~1 per hour of outage; restore stays < 30 min.
    probe_max_interval_ms: int = 15 * MINUTE_MS
    probe_window: int = 4
    restore_alpha: float = 0.01
    restore_ratio: float = 0.75


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (n is a window: tens)."""
    if k <= 0:
        return 1.0
    return sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k, n + 1))


Observation = tuple[bool, bool, float | None]  # approved, route failure, model p


class RouteHealth:
    """The state machine of one route."""

    __slots__ = ("base_fail", "base_n", "base_ok", "cause", "cfg", "demoted_at", "interval_ms",
                 "last_probe", "last_window", "probes", "recent", "state")  # fmt: skip

    def __init__(self, cfg: RouteHealthConfig) -> None:
        self.cfg = cfg
        self.state = RouteState.HEALTHY
        self.base_n = self.base_fail = self.base_ok = 0
        self.demoted_at: int | None = None
        self.last_probe: int | None = None  # event time of the last probe sent
        self.interval_ms = cfg.probe_interval_ms
        # (route-failure rate, approval rate, expected approval rate) of the last judged window
        self.last_window: tuple[float, float, float] | None = None
        self.cause: str | None = None  # the test that tripped: route_failure or route_approval
        self.recent: deque[Observation] = deque(maxlen=cfg.window)
        self.probes: deque[Observation] = deque(maxlen=cfg.probe_window)

    @property
    def baseline_failure_rate(self) -> float:
        c = self.cfg
        rate = (self.base_fail + c.prior_failure_rate * c.prior_samples) / (
            self.base_n + c.prior_samples
        )
        return max(rate, c.min_failure_rate)

    @property
    def baseline_approval(self) -> float:
        """The route's healthy approval rate (0.8 pseudo-rate behind 20 pseudo-outcomes)."""
        return (self.base_ok + 16.0) / (self.base_n + 20.0)

    def _judge(self, obs: deque[Observation]) -> tuple[float, float, float, float]:
        """(failure tail probability, approvals, expected approvals, their variance)."""
        n = len(obs)
        fails = sum(1 for o in obs if o[1])
        ok = sum(1 for o in obs if o[0])
        a0 = self.baseline_approval
        exp = var = 0.0
        for o in obs:
            p = a0 if o[2] is None else o[2]
            exp += p
            var += p * (1.0 - p)
        tail = binomial_tail(fails, n, self.baseline_failure_rate) if fails >= 2 else 1.0
        self.last_window = (fails / n, ok / n, exp / n)
        return tail, ok, exp, var

    def observe_healthy(self, approved: bool, route_failure: bool, p: float | None) -> bool:
        """One outcome on a healthy route; True when it completes a collapse (demote now)."""
        c = self.cfg
        self.recent.append((approved, route_failure, p))
        if len(self.recent) < c.min_outcomes:
            self._learn(approved, route_failure)
            return False
        tail, ok, exp, var = self._judge(self.recent)
        failed = tail < c.failure_alpha
        collapsed = failed or (
            ok <= c.collapse_ratio * exp and exp - ok >= c.collapse_z * math.sqrt(max(var, 1e-9))
        )
        if not collapsed:
            self._learn(approved, route_failure)
        else:
            self.cause = "route_failure" if failed else "route_approval"
        return collapsed

    def _learn(self, approved: bool, route_failure: bool) -> None:
        self.base_n += 1
        self.base_fail += route_failure
        self.base_ok += approved

    def demote(self, event_time: int) -> None:
        self.state = RouteState.DEMOTED
        self.demoted_at = event_time
        self.probes.clear()
        self.interval_ms = self.cfg.probe_interval_ms
        self.last_probe = event_time

    def probe_due(self, event_time: int) -> bool:
        return self.state is RouteState.DEMOTED and (
            self.last_probe is None or event_time - self.last_probe >= self.interval_ms
        )

    def observe_probe(self, approved: bool, route_failure: bool, p: float | None) -> bool:
        """One outcome on the demoted route; True when the probes say it recovered."""
        c = self.cfg
        self.probes.append((approved, route_failure, p))
        if approved:
            self.interval_ms = c.probe_interval_ms
        else:
            self.interval_ms = min(2 * self.interval_ms, c.probe_max_interval_ms)
        if len(self.probes) < c.probe_window:
            return False
        tail, ok, exp, _ = self._judge(self.probes)
        if tail >= c.restore_alpha and ok >= c.restore_ratio * exp:
            self.state = RouteState.HEALTHY
            self.demoted_at = None
            self.recent.clear()
            self.probes.clear()
            return True
        return False
