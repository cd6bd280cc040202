"""CLI entry points of the compile and scoring-core stage, for app.cli to wire.

app.cli already maps `authpilot compile` to app.model.compile:main and `authpilot bench-model`
to app.model.bench:main; these names are the same functions under the names the model stage
exports, so either wiring works.
"""

from __future__ import annotations


def main_compile(argv: list[str]) -> int:
    """`authpilot compile --model TRAIN_DIR [--matrix FILE] [--name N] [--version V]
    [--out ROOT] [--parallel-comp N] [--no-quantize]` or `authpilot compile --rebuild DIR`."""
    from app.model.compile import main

    return main(argv)


def main_bench(argv: list[str]) -> int:
    """`authpilot bench-model [--features 40] [--trees 200] [--leaves 31] [--rows 100000]
    [--reps 20000] [--no-quantize] [--parallel-comp N]`: prints the latency table."""
    from app.model.bench import main

    return main(argv)
