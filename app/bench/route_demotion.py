"""Attempts to demote a collapsing route, drawn straight through `RouteHealth` (no traffic model).

    python -m app.bench.route_demotion --healthy 60 300 --base-failure 0.004 --draws 3000

Each draw: `healthy` outcomes at the route's own failure rate (the rest approved at `p`),
then a collapse at `--failure` route failures (the rest approved at `--approve`) until the
route is demoted. Prints, per healthy count, the attempts into the collapse (median, p90,
p99, share over 20: issue 16's target) and the failure baseline the detector read at the
trip. Why it exists: the broker outage test's demotion tail came from the baseline absorbing
the outage's own failures, which only shows behind short healthy histories (60 outcomes: 11%
over 20 attempts before the fix, 0.07% after).

    python -m app.bench.route_demotion --whole --failure 0.3 --approve 0.42 --draws 2000

`--whole`: whole outages as the unit test draws them (150 healthy outcomes at 0.5% failures,
the collapse until demoted, 140 probes of the outage, then healed probes), with the restore's
evidence rule and with the window test alone: flaps (a restore during the outage) and the
probes a healed route needs to come back. At 60% failures (`--approve 0.17` or 0.28: 43% or
70% of the rest) 4 and 10 flaps in 2,000 (window alone 5 and 59), back after a median 9 and
10 probes; at 30% failures and 60% of the rest approved 37 (window alone 1,247), back after
18 (8).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from app.monitoring.route_health import RouteHealth, RouteHealthConfig


def collapse_until_demoted(rh: RouteHealth, rng: np.random.Generator, failure: float,
                           approve: float, p: float | None, limit: int) -> int | None:  # fmt: skip
    """Outcomes of a collapse (route failures at `failure`, the rest approved at `approve`,
    the model saying `p`) fed to a healthy route until it demotes: the attempts it took, None
    when not within `limit`."""
    for k in range(1, limit + 1):
        f = bool(rng.random() < failure)
        if rh.observe_healthy(not f and bool(rng.random() < approve), f, p):
            return k
    return None


def attempts_to_demote(rng: np.random.Generator, healthy: int, base_failure: float,
                       failure: float, approve: float, p: float,
                       cfg: RouteHealthConfig) -> tuple[int, float] | None:  # fmt: skip
    """(attempts into the collapse, baseline failure rate at the trip); None: a false
    demotion in the healthy part; attempts 1000 when the collapse never tripped."""
    rh = RouteHealth(cfg)
    for _ in range(healthy):
        f = bool(rng.random() < base_failure)
        if rh.observe_healthy(not f and bool(rng.random() < p), f, p):
            return None
    k = collapse_until_demoted(rh, rng, failure, approve, p, 999)
    return (1000 if k is None else k), rh.baseline_failure_rate


def whole_outage(rng: np.random.Generator, cfg: RouteHealthConfig, failure: float,
                 approve: float, outage_probes: int = 140, healthy: int = 150,
                 limit: int = 100) -> int | None:  # fmt: skip
    """One outage through a route's health: `healthy` outcomes at 0.5% failures (85% approved),
    the collapse (route failures at `failure`, the rest approved at `approve`) until demoted,
    `outage_probes` probes of it, then healed probes. The healed probes it took to come back;
    None for a flap (restored during the outage). 0.005 and 0.85 are the broker test's route."""
    rh = RouteHealth(cfg)
    for _ in range(healthy):
        f = bool(rng.random() < 0.005)
        rh.observe_healthy(not f and bool(rng.random() < 0.85), f, 0.85)
    while True:
        f = bool(rng.random() < failure)
        if rh.observe_healthy(not f and bool(rng.random() < approve), f, 0.85):
            rh.demote(0)
            break
    if any(rh.observe_probe(not f and bool(rng.random() < approve), f, 0.85)
           for f in (bool(x) for x in rng.random(outage_probes) < failure)):  # fmt: skip
        return None
    for k in range(1, limit + 1):
        f = bool(rng.random() < 0.005)
        if rh.observe_probe(not f and bool(rng.random() < 0.85), f, 0.85):
            return k
    return limit + 1


def _whole(a: argparse.Namespace, approve: float) -> None:
    base = RouteHealthConfig()
    alone = replace(base, restore_evidence=0.0)
    for name, cfg in (("evidence rule", base), ("window alone", alone)):
        rng = np.random.default_rng(a.seed)
        res = [whole_outage(rng, cfg, a.failure, approve) for _ in range(a.draws)]
        back = np.array([r for r in res if r is not None])
        print(
            f"{name}: flaps {sum(r is None for r in res)} of {a.draws}, healed back after a "
            f"median {np.median(back):.0f} probes (p90 {np.percentile(back, 90):.0f})"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--healthy", type=int, nargs="+", default=[60, 300],
                    help="healthy outcomes on the route before the collapse")  # fmt: skip
    ap.add_argument("--base-failure", type=float, default=0.004, help="healthy failure rate")
    ap.add_argument("--failure", type=float, default=0.6, help="route failures in the collapse")
    ap.add_argument("--approve", type=float, default=0.25,
                    help="share of all collapse attempts approved")  # fmt: skip
    ap.add_argument("--p", type=float, default=0.81, help="healthy approval (the model's p)")
    ap.add_argument("--draws", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=None,
                    help="default 0; with --whole 17, the unit test's")  # fmt: skip
    ap.add_argument("--whole", action="store_true",
                    help="whole outages: flaps, probes to come back")  # fmt: skip
    a = ap.parse_args(argv)
    if a.seed is None:
        a.seed = 17 if a.whole else 0
    cfg = RouteHealthConfig()
    ok_given_no_failure = min(1.0, a.approve / max(1e-9, 1.0 - a.failure))
    if a.whole:
        _whole(a, ok_given_no_failure)
        return 0
    for n in a.healthy:
        rng = np.random.default_rng(a.seed)
        res = [attempts_to_demote(rng, n, a.base_failure, a.failure, ok_given_no_failure, a.p,
                                  cfg) for _ in range(a.draws)]  # fmt: skip
        hits = [r for r in res if r is not None]
        k = np.array([r[0] for r in hits])
        b = np.array([r[1] for r in hits])
        print(f"healthy {n}: false demotions {len(res) - len(hits)}, attempts median "
              f"{np.median(k):.0f} p90 {np.percentile(k, 90):.0f} p99 {np.percentile(k, 99):.0f}"
              f", over 20 {np.mean(k > 20):.2%}; baseline at the trip median {np.median(b):.4f}"
              f" max {b.max():.4f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
