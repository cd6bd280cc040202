"""`authpilot bench-model`: the scoring core against raw C, tl2cgen's Predictor and LightGBM
(app.bench.model); `authpilot bench-capacity`: the capacity benchmark (app.bench.capacity).
`authpilot bench-e2e` is a traffic command (app.cli.traffic)."""

from __future__ import annotations

import argparse

from app.bench import model


def cmd_bench_model(a: argparse.Namespace) -> int:
    model.run(a.features, a.trees, a.leaves, a.rows, a.reps, not a.no_quantize, a.parallel_comp,
              a.seed)  # fmt: skip
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench-model", description=model.__doc__,
                       help="scoring core vs raw C vs Predictor vs LightGBM",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--features", type=int, default=40)
    p.add_argument("--trees", type=int, default=200)
    p.add_argument("--leaves", type=int, default=31)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=20_000)
    p.add_argument("--no-quantize", action="store_true")
    p.add_argument("--parallel-comp", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_bench_model)

    from app.bench import capacity_options

    c = sub.add_parser("bench-capacity", description=capacity_options.__doc__,
                       help="Python loop, bare Faust, worker open/closed loop, latency "
                            "(app.bench.capacity)")  # fmt: skip
    capacity_options.add_arguments(c)

    def cmd_bench_capacity(a: argparse.Namespace) -> int:
        from app.bench import capacity

        return capacity.run_args(c, a, None)

    c.set_defaults(func=cmd_bench_capacity)
