"""`authpilot chaos`: the fault-injection suite of issue 15, and `authpilot chaos-verify`,
the verifier alone over an existing deployment's topics."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from app.config import get_settings


def cmd_chaos(args: argparse.Namespace) -> int:
    from app.chaos import report, scenarios
    from app.cli.broker import ensure_kafka

    s = get_settings()
    base = scenarios.SHORT if args.short else scenarios.Options()
    changes = {k: v for k, v in {
        "rate": args.rate, "kills": args.kills, "failovers": args.failovers, "fuzz": args.fuzz,
        "broker_kills": args.broker_kills, "broker_down": args.broker_down, "seed": args.seed,
        "partitions": args.partitions, "fuzz_requests": args.fuzz_requests,
        "fuzz_outcomes": args.fuzz_outcomes, "redelivered": args.redelivered,
    }.items() if v is not None}  # fmt: skip
    o = dataclasses.replace(base, **changes)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = set(names) - set(scenarios.SCENARIOS)
    if unknown:
        print(f"unknown scenario(s) {sorted(unknown)}: one of {scenarios.SCENARIOS}",
              file=sys.stderr)  # fmt: skip
        return 2
    if "broker" in names and s.kafka_bootstrap:
        print(
            "the broker scenario SIGKILLs the suite's own local broker: unset "
            "AUTHPILOT_KAFKA_BOOTSTRAP or leave it out of --scenarios",
            file=sys.stderr,
        )
        return 2
    bootstrap = ensure_kafka(s)
    out = args.out or Path("var/chaos") / time.strftime("%Y%m%d-%H%M%S")
    say = report.Progress()
    say("chaos", f"scenarios {names} on {bootstrap}; results in {out}; {o}")
    results = scenarios.run(names, s, bootstrap, out.resolve(), o, say)
    md = report.write(results, out, {"options": o, "bootstrap": bootstrap, "argv": sys.argv})
    print(report.markdown(results))
    print(f"written: {md} and {out / 'results.json'}")
    return 1 if any(r.failed for r in results) else 0


def cmd_chaos_verify(args: argparse.Namespace) -> int:
    """Lost, duplicates, retries, dead letters and commits of the deployment the AUTHPILOT_*
    settings name (no ledger: every message on the input topics counts as valid)."""
    from app.chaos import report, scenarios

    s = get_settings()
    say = report.Progress()
    v = scenarios.verify(s, [], say, "verify", None, 0, 1, args.settle)
    checks = scenarios.stream_checks(v)
    res = report.Result("verify", f"deployment {s.app_id}", scenarios.stream_text(v), checks,
                        {"verified": v})  # fmt: skip
    print(report.markdown([res]))
    return 1 if res.failed else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("chaos", help="fault-injection suite: kills, broker kill, failover, fuzz")
    c.add_argument("--scenarios", default="kill,broker,failover,fuzz,redelivery",
                   help="comma-separated, run in this order")  # fmt: skip
    c.add_argument(
        "--short",
        action="store_true",
        help="the default-suite sizes (1 kill, 1 failover, 300 malformed)",
    )
    c.add_argument("--rate", type=float, help="requests/s of the steady stream (300)")
    c.add_argument("--kills", type=int, help="worker SIGKILLs (20)")
    c.add_argument("--failovers", type=int, help="two-worker SIGKILL repetitions (5)")
    c.add_argument("--fuzz", type=int, help="malformed messages (10000)")
    c.add_argument("--fuzz-requests", type=int, help="valid requests among them (2000)")
    c.add_argument("--fuzz-outcomes", type=int, help="valid outcomes among them (1000)")
    c.add_argument("--redelivered", type=int, help="outcomes delivered 3 times (100)")
    c.add_argument("--broker-kills", type=int, help="broker SIGKILLs (1)")
    c.add_argument("--broker-down", type=float, help="seconds the broker stays down (15)")
    c.add_argument("--partitions", type=int, help="partitions of the deployments' topics (4)")
    c.add_argument("--seed", type=int)
    c.add_argument("--out", type=Path, help="results directory (var/chaos/<time>)")
    c.set_defaults(func=cmd_chaos)
    v = sub.add_parser("chaos-verify", help="the chaos verifier over the configured topics")
    v.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds to wait for committed offsets to reach the ends",
    )
    v.set_defaults(func=cmd_chaos_verify)
