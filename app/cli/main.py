"""`authpilot` command line: broker, worker, traffic, demo, and the ML lifecycle commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.config import Settings, get_settings
from app.harness.process import running_worker
from app.kafka.connection import bootstrap_servers


def _broker(s: Settings):
    from app.kafka.local_broker import LocalBroker

    return LocalBroker.from_settings(s)


def cmd_kafka(args: argparse.Namespace, s: Settings) -> int:
    from app.kafka import local_broker as kafka_local

    if s.kafka_bootstrap:
        print(f"AUTHPILOT_KAFKA_BOOTSTRAP={s.kafka_bootstrap}: using that cluster, no local broker")
        return 0
    b = _broker(s)
    if args.action == "start":
        kafka_local.start(b)
    elif args.action == "stop":
        kafka_local.stop(b)
    elif args.action == "reset":
        kafka_local.reset(b)
    elif args.action == "install":
        kafka_local.install(b)
    print(kafka_local.status(b))
    return 0


def ensure_kafka(s: Settings) -> str:
    """The bootstrap address, starting the embedded broker when no cluster is configured."""
    if not s.kafka_bootstrap:
        from app.kafka import local_broker as kafka_local

        kafka_local.start(_broker(s))
    return bootstrap_servers(s)


def cmd_topics(args: argparse.Namespace, s: Settings) -> int:
    from app.kafka.topics import ensure_topics

    ensure_kafka(s)
    created = ensure_topics(s)
    print("created: " + (", ".join(created) if created else "nothing (all exist)"))
    return 0


def cmd_worker(args: argparse.Namespace, s: Settings) -> int:
    from app.worker.app import run_worker

    sys.argv = [sys.argv[0]]  # faust.Worker reads argv; ours are already parsed
    run_worker(s)
    return 0


def _traffic(args: argparse.Namespace):
    from app.harness.traffic import traffic_source

    try:
        return traffic_source(args.world, args.seed, args.start_day)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def cmd_loadgen(args: argparse.Namespace, s: Settings) -> int:
    from app.harness.loadgen import LoadGenerator
    from app.kafka.topics import ensure_topics

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


def cmd_demo(args: argparse.Namespace, s: Settings) -> int:
    from app.harness.loadgen import LoadGenerator
    from app.kafka.topics import ensure_topics

    print("== authpilot demo: local broker, one worker, closed-loop traffic ==", flush=True)
    ensure_kafka(s)
    ensure_topics(s)
    shown = [0]

    def show(d: dict) -> None:
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


def cmd_bench_e2e(args: argparse.Namespace, s: Settings) -> int:
    """Throughput and latency of the worker, next to a raw Kafka round trip in the same run."""
    from app.bench.e2e import run_bench

    ensure_kafka(s)
    return run_bench(s, args.rates, args.duration, args.out)


def cmd_promote(args: argparse.Namespace, s: Settings) -> int:
    from app.models.serving.registry import promote

    path = s.model_dir / args.name / args.version / "manifest.json"
    if not path.exists():
        print(f"warning: {path} is not on this machine; workers must have it", file=sys.stderr)
    rec = promote(s, args.name, args.version, args.role)
    print(f"promoted {rec['name']}/{rec['version']} as {rec['role']} on {s.topic_control}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="authpilot", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("kafka", help="the embedded local Kafka broker")
    k.add_argument("action", choices=["start", "stop", "status", "reset", "install"])
    k.set_defaults(func=cmd_kafka)

    sub.add_parser("topics", help="create authpilot's topics").set_defaults(func=cmd_topics)
    sub.add_parser("worker", help="run the stream worker").set_defaults(func=cmd_worker)
    pr = sub.add_parser("promote", help="make a compiled model champion or challenger")
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("--role", choices=["champion", "challenger"], default="champion")
    pr.set_defaults(func=cmd_promote)

    for name, func, helptext in (
        ("loadgen", cmd_loadgen, "closed-loop traffic against a running worker"),
        ("demo", cmd_demo, "broker + worker + traffic + live results"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--rate", type=float, default=50.0, help="requests per second")
        c.add_argument("--duration", type=float, default=30.0 if name == "demo" else 10.0)
        c.add_argument("--world", default="steady",
                       help="simulator scenario (steady, ...) or sample")  # fmt: skip
        c.add_argument("--seed", type=int, default=7)
        c.add_argument("--start-day", type=float, default=0.0,
                       help="start the simulated clock this many days into the scenario "
                            "(e.g. 10.2 for acquirer_outage)")  # fmt: skip
        c.set_defaults(func=func)
        if name == "loadgen":
            c.add_argument("--requests", type=int, default=None, help="stop after N requests")
            c.add_argument("--quiet", action="store_true")
            c.add_argument(
                "--open-loop", action="store_true", help="do not publish outcomes (decisions only)"
            )
            c.add_argument(
                "--produce-only", action="store_true", help="measure producing requests only"
            )
        else:
            c.add_argument("--show-decisions", type=int, default=5)

    b = sub.add_parser("bench-e2e", help="worker throughput/latency vs a raw Kafka round trip")
    b.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",")],
                   default=[100.0, 300.0, 600.0, 1000.0])  # fmt: skip
    b.add_argument("--duration", type=float, default=10.0)
    b.add_argument("--out", type=Path, default=Path("reports/bench-e2e"))
    b.set_defaults(func=cmd_bench_e2e)

    for name, (_, _, helptext) in DELEGATED.items():  # listed here, parsed by their module
        sub.add_parser(name, help=helptext, add_help=False)
    return p


# Commands whose arguments their own module parses: name -> (module, function, help).
DELEGATED = {
    "features": ("app.cli.features", "main", "features build|bench (offline SQL, online cost)"),
    "simulate": ("app.cli.simulate", "main_simulate", "write a simulated event log"),
    "train": ("app.models.training.train", "main", "train, calibrate and evaluate a model"),
    "compile": (
        "app.models.training.compile",
        "main",
        "compile a trained model to a shared library",
    ),
    "bench-model": ("app.bench.model", "main", "scoring core vs raw C vs Predictor vs LightGBM"),
    "report": (
        "app.cli.report",
        "main",
        "report experiment|shadow: arms, z-test, sequential test, off-policy estimates",
    ),
    "fit-retry": (
        "app.retry.recovery_fit",
        "main",
        "fit the retry engine's recovery table from a retry history",
    ),
    "evaluate-policy": (
        "app.cli.evaluate",
        "main",
        "every policy in the closed loop on the simulator, with a report",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        import importlib

        module, func, _ = DELEGATED[argv[0]]
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return int(args.func(args, get_settings()) or 0)


if __name__ == "__main__":
    sys.exit(main())
