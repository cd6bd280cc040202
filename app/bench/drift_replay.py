"""Replay simulated traffic through the HealthMonitor: false alarms, detection delay, cost.

    python -m app.bench.drift_replay --scenario steady --attempts 1000000 --seeds 1 2 3
    python -m app.bench.drift_replay --scenario acquirer_outage --attempts 1000000 --days 7 12

Stand-in for the dispatcher: each attempt goes to its merchant's default route, or with
probability epsilon to a uniformly drawn candidate; an attempt planned on a demoted route goes
there only as the route's probe when the monitor says one is due (`probe_due`, as the
dispatcher does) and otherwise to the merchant's first healthy candidate. Healthy candidates are
chosen per chunk of `chunk` attempts with the monitor's state at the chunk start (the decisions
in flight), outcomes are drawn vectorized from the simulator's truth for both the planned and
the fallback route and fed one by one. The model is the steady world's true p_approve (a
perfectly calibrated model that knows nothing of the scenario's events), optionally biased by
`calibration_shift`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.contracts.vocab import DAY_MS
from app.monitoring.health import HealthMonitor, MonitorConfig
from app.sim import load_world, traffic
from app.sim.truth import APPROVED, FAILURE_SIDE, draw_many, p_approve_many
from app.sim.world import RouteOutage, World


@dataclass(frozen=True)
class CalibrationShift:
    """Bias the model's logit by `logit` for requests in [start_day, end_day)."""

    start_day: float
    end_day: float
    logit: float


@dataclass
class ReplayResult:
    world: World
    t_ms: np.ndarray  # request time per attempt
    route: np.ndarray  # route index per attempt
    alerts: list[dict[str, Any]] = field(default_factory=list)
    monitor_seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return len(self.t_ms)

    @property
    def us_per_attempt(self) -> float:
        """Monitor time per attempt (one decision + one outcome, ~9 detector updates)."""
        return 1e6 * self.monitor_seconds / max(self.attempts, 1)

    def of_kind(self, kind: str, subject: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["kind"] == kind and subject in (None, a["subject"])]

    def attempts_on(self, route_id: str, t0: int, t1: int) -> int:
        """Attempts sent to route_id with request time in [t0, t1]."""
        r = self.world.route_idx[route_id]
        return int(((self.route == r) & (self.t_ms >= t0) & (self.t_ms <= t1)).sum())


def replay(
    scenario: str,
    attempts: int,
    seed: int,
    *,
    days: tuple[float, float] | None = None,
    epsilon: float = 0.1,
    chunk: int = 256,
    config: MonitorConfig | None = None,
    calibration_shift: CalibrationShift | None = None,
) -> ReplayResult:
    """`attempts` first attempts over the scenario's horizon (only those inside `days` kept)."""
    world = load_world(scenario)
    model_world = load_world("steady")
    rng = np.random.default_rng(seed)
    t = traffic.payment_times(world, attempts, rng)
    if days is not None:
        d = (t - world.start_ms) / DAY_MS
        t = t[(d >= days[0]) & (d < days[1])]
    pay = traffic.sample_payments(world, t, rng)
    batch = traffic.to_batch(world, pay)
    n = len(t)
    cb = (batch.merchant_country != batch.issuer_country).tolist()
    sca = batch.sca_required.tolist()
    amount = batch.amount.tolist()
    t_list = t.tolist()
    shift = np.zeros(n)
    if calibration_shift is not None:
        d = (t - world.start_ms) / DAY_MS
        cs = calibration_shift
        shift[(d >= cs.start_day) & (d < cs.end_day)] = cs.logit
    explore = rng.random(n) < epsilon
    k = world.merchant_ncand[pay.merchant]
    pick = np.minimum((rng.random(n) * k).astype(np.int64), k - 1)
    cand = world.merchant_cand[pay.merchant]
    planned = np.where(explore, cand[np.arange(n), pick], world.merchant_default[pay.merchant])

    mon = HealthMonitor(config, model_version="steady-truth")
    route_ids = world.route_ids
    routes = np.empty(n, np.int64)
    res = ReplayResult(world, t, routes)
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        r = planned[sl]
        alt = r.copy()
        dem = np.array([mon.is_demoted(x) for x in route_ids])
        move = dem[r]
        if move.any():
            c = cand[sl][move]
            ok = (c >= 0) & ~dem[np.maximum(c, 0)]
            alt[move] = np.where(ok.any(1), c[np.arange(len(c)), ok.argmax(1)], r[move])
        b = batch.take(np.arange(sl.start, sl.stop))
        drawn = draw_many(world, b, r, rng)
        p = _model_p(model_world, b, r, shift[sl])
        kind_alt, lat_alt, p_alt = drawn.kind.copy(), drawn.latency_ms.copy(), p.copy()
        if move.any():  # outcomes on the fallback route only where one may be needed
            rows = np.flatnonzero(move)
            bm = batch.take(sl.start + rows)
            d_alt = draw_many(world, bm, alt[rows], rng)
            kind_alt[rows], lat_alt[rows] = d_alt.kind, d_alt.latency_ms
            p_alt[rows] = _model_p(model_world, bm, alt[rows], shift[sl][rows])
        cols = [x.tolist() for x in (r, alt, p, p_alt, drawn.kind, kind_alt,
                                     drawn.latency_ms, lat_alt)]  # fmt: skip
        t0 = time.perf_counter()
        for j, (ri, ai, pi, pa, ki, ka, li, la) in enumerate(zip(*cols, strict=True)):
            i = s + j
            ti = t_list[i]
            rid = route_ids[ri]
            if ai != ri and mon.is_demoted(rid):
                if mon.probe_due(rid, ti):
                    mon.probe_sent(rid, ti)
                else:  # not a probe: the attempt goes to the healthy candidate
                    ri, pi, ki, li, rid = ai, pa, ka, la, route_ids[ai]
            routes[i] = ri
            alerts = mon.observe_decision(ti, pi, amount[i], cb[i], sca[i])
            alerts += mon.observe_outcome(rid, ki == APPROVED, FAILURE_SIDE[ki], ti + li, pi)
            if alerts:
                res.alerts += alerts
        res.monitor_seconds += time.perf_counter() - t0
    return res


def _model_p(model_world: World, b: Any, r: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The steady world's true p for routes r, biased by `shift` logits."""
    p = p_approve_many(model_world, b, r)
    return 1.0 / (1.0 + np.exp(-(np.log(p / (1.0 - p)) + shift)))


def bench_update(n: int = 200_000) -> float:
    """Microseconds per Signal.update on a Bernoulli stream (the per-detector cost)."""
    from app.monitoring.drift import DriftConfig, Signal

    sig = Signal("calibration", "r", DriftConfig().calibration)
    xs = (np.random.default_rng(0).random(n) < 0.01).astype(float).tolist()
    t0 = time.perf_counter()
    for x in xs:
        sig.update(x)
    return 1e6 * (time.perf_counter() - t0) / n


def outage_report(res: ReplayResult) -> list[str]:
    """Per outage event: demotion delay (attempts on the route, simulated minutes), restore."""
    w = res.world
    lines = []
    for e in w.events:
        if not isinstance(e, RouteOutage):
            continue
        start = w.start_ms + int(e.start_day * DAY_MS)
        end = w.start_ms + int(e.end_day * DAY_MS)
        dem = [a for a in res.of_kind("ROUTE_DEMOTED", e.route_id) if a["event_time"] >= start]
        rest = [a for a in res.of_kind("ROUTE_RESTORED", e.route_id) if a["event_time"] >= end]
        if not dem:
            lines.append(f"{e.route_id}: outage not detected")
            continue
        td = dem[0]["event_time"]
        lines.append(
            f"{e.route_id}: demoted after {res.attempts_on(e.route_id, start, td)} attempts on "
            f"the route, {(td - start) / 60_000:.1f} simulated min after the outage start; "
            + (
                f"restored {(rest[0]['event_time'] - end) / 60_000:.0f} min after its end"
                if rest
                else "not restored"
            )
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.bench.drift_replay")
    ap.add_argument("--scenario", default="steady")
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--days", type=float, nargs=2, default=None)
    a = ap.parse_args(argv)
    print(f"Signal.update: {bench_update():.2f} us")
    for seed in a.seeds:
        res = replay(a.scenario, a.attempts, seed, days=tuple(a.days) if a.days else None)
        kinds: dict[str, int] = {}
        for al in res.alerts:
            kinds[al["kind"]] = kinds.get(al["kind"], 0) + 1
        print(
            f"scenario={a.scenario} seed={seed} attempts={res.attempts} alerts={kinds or 0} "
            f"monitor_us_per_attempt={res.us_per_attempt:.1f}"
        )
        for al in res.alerts:
            print("  ", al["kind"], al["subject"], al["event_time"], al["message"])
        for line in outage_report(res):
            print("  ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
