"""Route health: a per-route state machine that acts in attempts on the route, not in time.

    HEALTHY --(the last `window` outcomes on the route show a collapse)--> DEMOTED  ROUTE_DEMOTED
    DEMOTED --(the last `probe_window` probe outcomes look healthy)-----> HEALTHY  ROUTE_RESTORED

A collapse is any of (tested after every outcome once `min_outcomes` are in the window):
- route_failure: route-side failures (failure_side ROUTE: acquirer/processor errors, timeouts)
  far above the route's own baseline over the last `window` outcomes: P(X >= failures | n,
  baseline) < `failure_alpha` (binomial tail; the baseline is the route's healthy failure rate
  shrunk towards `prior_failure_rate`);
- route_collapse: fewer route failures (tail < `corroborated_alpha` against
  `corroborated_failure_mult` x the baseline: more than a surge's load) together with approvals
  <= `collapse_ratio` x what the model expected of these very attempts (sum of its p, which
  corrects for the traffic mix; without the model's p the route's healthy approval rate);
- route_approval: issuer-side codes only, over the last `approval_window` outcomes: approvals
  <= `approval_ratio` x expected and `approval_z` sd under it. Issuer declines never demote
  unless they halve the route's approvals over its whole traffic, a route problem whatever the
  codes say.
Figures (tests/unit/monitoring/test_route_health.py, 2,000 draws after 500 healthy
outcomes): 60% route failures trip in <= 19 attempts (median 6; 10 before outcomes joined the
baseline only once out of the window); 25% failures with approvals cut to 0.35 within 20
attempts in ~78% of draws (median 15); approvals 0.85 -> 0.3 without failures in ~50.
Issuers swinging 90% <-> 75% that the model missed, and 100k calibrated steady outcomes, never
demote.

A demoted route is dropped from exploitation and exploration but probed: the dispatcher sends
it one request when `probe_due`, so recovery is seen within minutes at any traffic rate. The
probe interval starts at `probe_interval_ms`, doubles after every probe with a route failure
up to `probe_max_interval_ms`, halves after a probe the issuer answered (approved or declined
on issuer codes: the route carried it there and back) and drops back to the start after two
approved in a row: a dead route at 60% route failures costs ~12 probes an hour (resetting on
every approval, a route approving 22% during its outage was probed every 1-2 min, a large
share of the evaluator's ~200 payments an hour). Every outcome on a demoted route counts as a
probe (in-flight ones included). Restored when the last `probe_window` probes have route
failures not above baseline (P(X >= failures) >= `restore_alpha`) and approvals at least
`restore_ratio` x expected, and the probes since the demotion favour healthy over the route
as it has been since by a likelihood ratio of 1e4 (`restore_evidence`). A healed route waits
at most 8 minutes for its first probe, then halving waits (`python -m app.bench.drift_replay
--scenario acquirer_outage --attempts 120000 --days 7 12 --seeds 1 2 ... 10`, ~175 payments
an hour: restored 10-91 min after healing, median 36, with the probe cap below, the same
after the lagged baseline; 8-87 without the evidence rule; 10-25 before the cap). The tail is
the cap: at that rate `acq-de` is a candidate of ~70 requests an hour, so a route that still
looks dead is probed every ~40 min (seed 1: probes at -1.7, +34 and +78 min around the
healing, then ten clean ones in 13 min); 6 of the 10 seeds restore after more than 30 min.
Ten probes of a route at 60% route failures and -2 logits pass the window with probability
~0.003% at the 0.5% baseline, more above it (see `restore_evidence`); a false restore is
demoted again in ~10 attempts.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
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
    # The failure test also runs on the last `short_window` outcomes: 4 route failures of 8 at
    # a 0.5% baseline (4e-8) trip ~2 attempts sooner than 5 of 20 (5e-8) at 60% failures.
    short_window: int = 8
    # A test per outcome: 1e-7 keeps 1M steady outcomes per route free of false demotions.
    failure_alpha: float = 1e-7
    prior_failure_rate: float = 0.01
    prior_samples: int = 100
    min_failure_rate: float = 0.005  # a route that never failed still fails sometimes
    # Corroborated collapse (window): route failures at least this unlikely AND approvals
    # <= collapse_ratio x expected. Each alone is common (3 failures in 20 at 0.5%: 1e-4;
    # 10 of 20 approved at 0.85: 2.5e-4); both together ~3e-8 per window.
    corroborated_alpha: float = 1e-3
    # ... tested against this multiple of the baseline: a surge that doubles route failures
    # under load while issuers turn stricter (holiday_surge: x2, -0.35 logits, NSF x1.6)
    # demoted proc-global 3 times over Black Friday against 1x; a collapse is more than that.
    corroborated_failure_mult: float = 3.0
    collapse_ratio: float = 0.6
    # Approvals alone (issuer-side codes only): a longer window, a deeper ratio, more sd. 20
    # outcomes cannot tell a route cut to 0.3 from issuers at 0.75 the model missed (false
    # alarms ~1% per window); 60 can: ok <= 0.5 x expected and 5 sd under it.
    approval_window: int = 60
    approval_min_outcomes: int = 30
    approval_ratio: float = 0.5
    approval_z: float = 5.0
    # 30 s after a passed probe: ten probes see a healed route back within ~5 min
    probe_interval_ms: int = MINUTE_MS // 2
    # 8 min: a dead route (60% route failures, -2 logits) got 138 probes in 11.4 simulated
    # hours on the broker (tests/integration/test_drift_kafka.py; a failed probe loses ~0.25
    # approvals: its route failures cascade to another route); a healed one waits <= 8 min for
    # its first probe, then halving waits: restored 10-25 min after healing at ~175 payments an
    # hour (drift_replay, see the module docstring). 10 min with a wait that stayed on issuer
    # declines: 15-44 min, 3 of 10 seeds over 30.
    probe_max_interval_ms: int = 8 * MINUTE_MS
    # ... and never more than one probe per 50 requests that could carry one (2% of the route's
    # candidate traffic). The time schedule alone is ~12 probes an hour whatever the rate: in
    # evaluate-policy's acquirer_outage (~240 payments an hour) that was ~5% of first attempts
    # sent to a route approving ~14%, and the EV router fell 0.99-1.22 points under the static
    # router during the outage (-0.14 [-0.57, 0.29] with this, restores 7-14 min). At high
    # rates the schedule binds; at low ones this, at the cost of slower restores: drift_replay
    # at ~175 payments an hour, 8-87 min after healing over seeds 1-10 (10-25 without). Lifted
    # while the last probe was approved (app.monitoring.health.HealthMonitor.probe_due).
    probe_min_requests: int = 50
    # ... and, while it still looks dead, a due probe waits for a cheap request: value at risk
    # (amount x the p of where the request would go otherwise) at most the `probe_cost_quantile`
    # of the last `probe_cost_window` requests offered, or `probe_cost_patience` offers at most.
    # A probe of a dead route loses what the request would have earned elsewhere, ~0.6 of an
    # approval (acquirer_outage, seeds 1-3: 185 probes, 25% approved against 84% on the static
    # router's routes, -1.28 points of the during phase's first-attempt approval while the EV
    # router's own choices gained +1.39); the cheapest quarter of requests risks a fraction of
    # the value, and 20 offers wait ~5 min at ~240 payments an hour.
    probe_cost_quantile: float = 0.25
    probe_cost_window: int = 50
    probe_cost_patience: int = 20
    # 10 probes, none failing at a 0.5% baseline (P(X >= 1 | 10, 0.005) = 4.9% < restore_alpha)
    # and approvals >= 0.8 x expected: a route at 60% route failures and -2 logits passes a
    # group with ~3e-5 (a 12 h outage sees ~80-170 probes, clustered: every answered probe
    # brings the next one closer; drift_replay at ~175 payments an hour: 1 flap in 20 seeds,
    # demoted again within ~10 attempts). 4 probes tolerating one failure let ~1.8% through and
    # flapped in 2 of 3 replays, 8 clean probes in 2 of 3 (runs of 9 clean probes at a 40% clean
    # rate). A healed route at p 0.9 passes a group with ~0.9.
    probe_window: int = 10
    restore_alpha: float = 0.05
    restore_ratio: float = 0.8
    # ... and the probes since the demotion must favour "healthy" over "as it has been since
    # it was demoted" by this likelihood ratio (a CUSUM of per-probe log ratios, in nats; see
    # RouteHealth.evidence). The window test alone has a knife edge: at a baseline above
    # 0.52% (the 1% prior behind a short history, or a route failing 0.6%) one failure in ten
    # passes, and a route at 60% failures and -2 logits then passes a group ~17x more often;
    # on the broker a restore 2.8 simulated hours into a 12 h outage failed the suite once.
    # ln(1e4): a route still as it was crosses it about once per 1e4 probes (~100 outage hours
    # of probes). Whole outages (`python -m app.bench.route_demotion --whole`, the unit test's
    # draws; 2,000 each: 150 healthy outcomes, a collapse, 140 probes, then healed): at 60%
    # route failures flaps 4 and 10 with 43% and 70% of the rest approved, against 5 and 59
    # for the window alone; at 30% failures and 60% approved 37 against 1,247 (re-measured
    # after the lagged baseline, stop 37; before it 12 / 125 and 59 / 1,748 for the window
    # alone). The price: a healed route is back after a median 9-10 probes (window alone 9),
    # 18 after the milder outage (alone 8), whose "as since" is nearer healthy (each approval
    # +0.7 nats, not +1.6).
    restore_evidence: float = 9.21


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (n is a window: tens)."""
    if k <= 0:
        return 1.0
    return sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k, n + 1))


Observation = tuple[bool, bool, float | None]  # approved, route failure, model p


class RouteHealth:
    """The state machine of one route."""

    __slots__ = ("base_fail", "base_n", "base_ok", "cause", "cause_window", "cfg",
                 "costs", "dead", "demoted_at", "evidence", "interval_ms", "last_probe",
                 "last_window", "offers", "probes", "recent", "state", "waited")  # fmt: skip

    def __init__(self, cfg: RouteHealthConfig) -> None:
        self.cfg = cfg
        self.state = RouteState.HEALTHY
        self.base_n = self.base_fail = self.base_ok = 0
        self.demoted_at: int | None = None
        self.last_probe: int | None = None  # event time of the last probe sent
        self.offers = 0  # requests that could have carried a probe since the last (health.py)
        self.costs: deque[float] = deque(maxlen=cfg.probe_cost_window)  # their values at risk
        self.waited = 0  # requests a due probe let pass waiting for a cheap one
        self.interval_ms = cfg.probe_interval_ms
        # (route-failure rate, approval rate, expected approval rate) of the last judged window
        self.last_window: tuple[float, float, float] | None = None
        # the test that tripped (route_failure, route_collapse, route_approval) and its window
        self.cause: str | None = None
        self.cause_window = cfg.window
        self.recent: deque[Observation] = deque(maxlen=max(cfg.window + 1, cfg.approval_window))
        self.probes: deque[Observation] = deque(maxlen=cfg.probe_window)
        # while demoted: (outcomes, route failures, approvals, expected approvals) of the
        # window that tripped plus the probes since, the "as it has been" hypothesis the next
        # probe is weighed against, and the evidence (nats) the probes give "healthy" over it
        self.dead = [0.0, 0.0, 0.0, 0.0]
        self.evidence = 0.0

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

    def _judge(self, obs: Iterable[Observation]) -> tuple[int, int, int, float, float]:
        """(outcomes, route failures, approvals, expected approvals, their variance); keeps
        the rates in last_window."""
        a0 = self.baseline_approval
        n = fails = ok = 0
        exp = var = 0.0
        for o in obs:
            n += 1
            fails += o[1]
            ok += o[0]
            p = a0 if o[2] is None else o[2]
            exp += p
            var += p * (1.0 - p)
        self.last_window = (fails / n, ok / n, exp / n)
        return n, fails, ok, exp, var

    def observe_healthy(self, approved: bool, route_failure: bool, p: float | None) -> bool:
        """One outcome on a healthy route; True when it completes a collapse (demote now)."""
        c = self.cfg
        self.recent.append((approved, route_failure, p))
        cause = self._collapse() if len(self.recent) >= c.min_outcomes else None
        if cause is None:
            # An outcome joins the baseline once it has left the failure window untripped, not
            # at once: learned at once, an outage's first failures raised the very baseline they
            # were judged against (0.4% true, 1.5% at the trip; 5.6% behind 60 healthy
            # outcomes, where 11% of outages at 60% route failures then took over 20 attempts).
            if len(self.recent) > c.window:
                old_approved, old_failure, _ = self.recent[-c.window - 1]
                self._learn(old_approved, old_failure)
            return False
        self.cause = cause
        return True

    def _last(self, k: int) -> tuple[int, int, int, float, float]:
        """_judge over the newest k outcomes."""
        return self._judge(itertools.islice(self.recent, max(0, len(self.recent) - k), None))

    def _collapse(self) -> str | None:
        """The test the recent outcomes fail, if any (see RouteHealthConfig for the figures)."""
        c = self.cfg
        if len(self.recent) >= c.approval_min_outcomes:
            n, _, ok, exp, var = self._last(c.approval_window)
            sd = math.sqrt(max(var, 1e-9))
            if ok <= c.approval_ratio * exp and exp - ok >= c.approval_z * sd:
                self.cause_window = n
                return "route_approval"
        base = self.baseline_failure_rate
        for k in (c.short_window, c.window):
            n, fails, ok, exp, _ = self._last(k)
            self.cause_window = n
            if fails >= 2 and binomial_tail(fails, n, base) < c.failure_alpha:
                return "route_failure"
        # (n, fails, ok, exp) of the last `window` outcomes
        if ok <= c.collapse_ratio * exp and fails >= 2:
            loose = min(1.0, c.corroborated_failure_mult * base)
            if binomial_tail(fails, n, loose) < c.corroborated_alpha:
                return "route_collapse"
        return None

    def _learn(self, approved: bool, route_failure: bool) -> None:
        self.base_n += 1
        self.base_fail += route_failure
        self.base_ok += approved

    def demote(self, event_time: int) -> None:
        """Demote on the window last judged (the one that tripped): its counts start the
        hypothesis the probes must refute."""
        fail, ok, exp = self.last_window or (1.0, 0.0, self.baseline_approval)
        n = float(self.cause_window)
        self.dead = [n, fail * n, ok * n, exp * n]
        self.evidence = 0.0
        self.state = RouteState.DEMOTED
        self.demoted_at = event_time
        self.probes.clear()
        self.interval_ms = self.cfg.probe_interval_ms
        self.last_probe = event_time
        self.offers = 0

    def probe_due(self, event_time: int) -> bool:
        return self.state is RouteState.DEMOTED and (
            self.last_probe is None or event_time - self.last_probe >= self.interval_ms
        )

    def looks_dead(self) -> bool:
        """Its wait is above the minimum and its last probe was not approved."""
        return self.interval_ms > self.cfg.probe_interval_ms and not (
            self.probes and self.probes[-1][0]
        )

    def cheap(self, at_risk: float, due: bool) -> bool:
        """Whether a due probe may take a request with this value at risk (recorded): at most
        the cost quantile of the recent offers, or the probe waited its patience."""
        c = self.cfg
        ok = len(self.costs) < c.probe_cost_window // 2 or at_risk <= sorted(self.costs)[
            int(c.probe_cost_quantile * len(self.costs))]  # fmt: skip
        self.costs.append(at_risk)
        if not due:
            return False
        self.waited += 1
        return ok or self.waited > c.probe_cost_patience

    def _expected(self, p: float | None) -> float:
        """An outcome's expected approval: the model's p, else the route's healthy rate."""
        return self.baseline_approval if p is None else p

    def _log_ratio(self, approved: bool, route_failure: bool, p: float | None) -> float:
        """log P(outcome | healthy) / P(outcome | as since the demotion), over the three
        outcomes (route failure, approved, declined by the issuer). Healthy fails at the
        baseline and approves at the model's p; "as since" fails at the rate of the tripping
        window and the probes so far and approves at their approvals / expected x p, at most
        `collapse_ratio` x p (a demotion is a collapse: a healed route's probes, counted in,
        must not make the two hypotheses alike)."""
        c = self.cfg
        base = self.baseline_failure_rate
        q = self._expected(p)
        n, fails, ok, exp = self.dead
        fail_d = min(max(fails / max(n, 1.0), base), 0.95)
        ratio_d = min(ok / max(exp, 1e-9), c.collapse_ratio)
        if route_failure:
            return math.log(base / fail_d)
        ok_h = min(q, 1.0 - base - 0.01)
        ok_d = max(min(ratio_d * q, 1.0 - fail_d - 0.01), 1e-3)
        if approved:
            return math.log(ok_h / ok_d)
        return math.log((1.0 - base - ok_h) / max(1.0 - fail_d - ok_d, 1e-3))

    def observe_probe(self, approved: bool, route_failure: bool, p: float | None) -> bool:
        """One outcome on the demoted route; True when the probes say it recovered: the last
        `probe_window` look healthy and the evidence since the demotion clears
        `restore_evidence` (a CUSUM: it never goes below 0, so a healed route is not held
        back by the failed probes of its outage)."""
        c = self.cfg
        again = bool(self.probes) and self.probes[-1][0]  # the previous probe approved too
        if len(self.probes) == c.probe_window:  # the oldest leaves the window: it joins the
            old = self.probes[0]  # "as since" counts (the newest would let a healed route's
            d = self.dead  # own probes make the two hypotheses alike)
            d[0] += 1.0
            d[1] += old[1]
            d[2] += old[0]
            d[3] += self._expected(old[2])
        self.probes.append((approved, route_failure, p))
        self.evidence = max(0.0, self.evidence + self._log_ratio(approved, route_failure, p))
        if route_failure:  # the route still fails: wait twice as long
            self.interval_ms = min(2 * self.interval_ms, c.probe_max_interval_ms)
        elif approved and again:  # two approvals in a row: probe at full speed
            self.interval_ms = c.probe_interval_ms
        else:  # answered by the issuer (approved, or declined on issuer codes): the route
            # carried the request there and back, so halve the wait (keeping it on an issuer
            # decline left a healed route at the maximum for another round: restores of 32 and
            # 53 simulated min in 2 of 5 full-suite runs of the broker outage test).
            self.interval_ms = max(c.probe_interval_ms, self.interval_ms // 2)
        if len(self.probes) < c.probe_window:
            return False
        n, fails, ok, exp, _ = self._judge(self.probes)
        tail = binomial_tail(fails, n, self.baseline_failure_rate)
        clear = self.evidence >= c.restore_evidence
        if clear and tail >= c.restore_alpha and ok >= c.restore_ratio * exp:
            self.state = RouteState.HEALTHY
            self.demoted_at = None
            self.recent.clear()
            self.probes.clear()
            return True
        return False
