"""`authpilot loadgen`, `authpilot demo` (app.demo.run) and `authpilot bench-e2e`: simulated
traffic against a worker, with live results or a throughput/latency report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.broker import ensure_kafka
from app.config import get_settings

if TYPE_CHECKING:
    from app.harness.traffic import TrafficSource


def _traffic(args: argparse.Namespace) -> TrafficSource:
    from app.harness.traffic import traffic_source

    try:
        return traffic_source(args.world, args.seed, args.start_day)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def cmd_loadgen(args: argparse.Namespace) -> int:
    from app.harness.loadgen import LoadGenerator
    from app.kafka.topics import ensure_topics

    s = get_settings()
    ensure_kafka(s)
    ensure_topics(s)
    gen = LoadGenerator(
        s,
        _traffic(args),
        args.rate,
        args.duration,
        args.requests,
        outcomes=not args.open_loop,
    )
    if args.produce_only:
        sent, secs = gen.produce_only()
        print(f"produced {sent} requests in {secs:.2f}s: {sent / secs:,.0f} requests/s")
        return 0
    st = gen.run(show=not args.quiet)
    p50, p99 = st.percentiles()
    print(
        f"produced {st.produced} decided {st.decided} outcomes {st.outcomes} "
        f"approval {st.approved / max(st.outcomes, 1):.2%} e2e p50 {p50 / 1000:.2f} ms "
        f"p99 {p99 / 1000:.2f} ms duplicates {st.duplicates}"
    )
    return 0 if st.decided == st.produced + st.retries_sent else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The story of app.demo.run; the report's path is the last line."""
    from app.demo.run import ARMS, DemoOptions, run

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        print(f"authpilot demo: --arms takes {', '.join(ARMS)}; not {unknown}", file=sys.stderr)
        return 2
    o = DemoOptions(rate=args.rate, duration=args.duration, scenario=args.scenario,
                    no_model=args.no_model, arms=arms, holdout_pct=args.holdout_pct,
                    out=args.out, history_attempts=args.history_attempts, seed=args.seed,
                    live=not args.plain)  # fmt: skip
    path = run(o, get_settings())
    print(f"report: {path}")
    return 0


def cmd_bench_e2e(args: argparse.Namespace) -> int:
    """Throughput and latency of the worker, next to a raw Kafka round trip in the same run."""
    from app.bench.e2e import run_bench

    s = get_settings()
    ensure_kafka(s)
    return run_bench(s, args.rates, args.duration, args.out)


def _traffic_arguments(c: argparse.ArgumentParser, duration: float) -> None:
    c.add_argument("--rate", type=float, default=50.0, help="requests per second")
    c.add_argument("--duration", type=float, default=duration)
    c.add_argument("--world", default="steady",
                   help="simulator scenario (steady, ...) or sample")  # fmt: skip
    c.add_argument("--seed", type=int, default=7)
    c.add_argument("--start-day", type=float, default=0.0,
                   help="start the simulated clock this many days into the scenario "
                        "(e.g. 10.2 for acquirer_outage)")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("loadgen", help="closed-loop traffic against a running worker")
    _traffic_arguments(c, duration=10.0)
    c.add_argument("--requests", type=int, default=None, help="stop after N requests")
    c.add_argument("--quiet", action="store_true")
    c.add_argument(
        "--open-loop", action="store_true", help="do not publish outcomes (decisions only)"
    )
    c.add_argument("--produce-only", action="store_true", help="measure producing requests only")
    c.set_defaults(func=cmd_loadgen)

    d = sub.add_parser("demo", help="the product on one machine: models, arms, an incident, live",
                       description="Broker, champion + shadow challenger, experiment arms, "
                       "closed-loop traffic through an outage and an issuer shift, a live view "
                       "and a report (app.demo.run).")  # fmt: skip
    d.add_argument("--rate", type=float, default=60.0, help="payments per second")
    d.add_argument("--duration", type=float, default=180.0, help="seconds of traffic")
    d.add_argument("--scenario", default="demo_story",
                   help="simulator scenario; its events are the incidents (demo_story: an "
                   "acquirer outage, then an issuer shift)")  # fmt: skip
    d.add_argument("--arms", default="ev,sr",
                   help="experiment arms beside the holdout: ev (expected value with the "
                   "champion), sr (success rate), oracle (the simulator's truth)")  # fmt: skip
    d.add_argument("--holdout-pct", type=int, default=10, help="best-single-route holdout")
    d.add_argument("--no-model", action="store_true",
                   help="no champion: every arm shows the success-rate fallback")  # fmt: skip
    d.add_argument("--history-attempts", type=int, default=60_000,
                   help="simulated history the models are trained on (cached)")  # fmt: skip
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--out", type=Path, default=Path("var/demo"))
    d.add_argument(
        "--plain",
        action="store_true",
        help="a line every 5 s instead of the live view (also when not a terminal)",
    )
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench-e2e", help="worker throughput/latency vs a raw Kafka round trip")
    b.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                   default=[100.0, 300.0, 600.0, 1000.0])  # fmt: skip
    b.add_argument("--duration", type=float, default=10.0)
    b.add_argument("--out", type=Path, default=Path("reports/bench-e2e"))
    b.set_defaults(func=cmd_bench_e2e)
