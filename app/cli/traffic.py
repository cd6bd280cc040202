"""`authpilot loadgen`, `authpilot demo` and `authpilot bench-e2e`: simulated traffic against
a worker, with live results or a throughput/latency report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.broker import ensure_kafka
from app.config import get_settings
from app.harness.process import running_worker

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
    from app.harness.loadgen import LoadGenerator
    from app.kafka.topics import ensure_topics

    s = get_settings()
    print("== authpilot demo: local broker, one worker, closed-loop traffic ==", flush=True)
    ensure_kafka(s)
    ensure_topics(s)
    shown = [0]

    def show(d: dict[str, Any]) -> None:
        if shown[0] < args.show_decisions:
            shown[0] += 1
            sc = " ".join(
                f"{x['route_id']}={x['p_approve']:.2f}/{x['samples']}" for x in d["scores"]
            )
            print(
                f"decision {d['request_id']}: -> {d['chosen_route']} "
                f"(p={d['propensity']:.3f}, {','.join(d['reason_codes'][:1])}) {sc}",
                file=sys.stderr,
                flush=True,
            )

    with running_worker(s, "demo-worker"):
        gen = LoadGenerator(
            s,
            _traffic(args),
            args.rate,
            args.duration,
            on_decision=show,
        )
        st = gen.run(show=True)
    p50, p99 = st.percentiles()
    print(
        f"\nsummary: {st.decided}/{st.produced} requests decided, approval "
        f"{st.approved / max(st.outcomes, 1):.2%}, e2e latency p50 {p50 / 1000:.2f} ms "
        f"p99 {p99 / 1000:.2f} ms, routes {dict(sorted(st.by_route.items()))}",
        flush=True,
    )
    return 0 if st.decided == st.produced + st.retries_sent else 1


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

    d = sub.add_parser("demo", help="broker + worker + traffic + live results")
    _traffic_arguments(d, duration=30.0)
    d.add_argument("--show-decisions", type=int, default=5)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench-e2e", help="worker throughput/latency vs a raw Kafka round trip")
    b.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                   default=[100.0, 300.0, 600.0, 1000.0])  # fmt: skip
    b.add_argument("--duration", type=float, default=10.0)
    b.add_argument("--out", type=Path, default=Path("reports/bench-e2e"))
    b.set_defaults(func=cmd_bench_e2e)
