"""`authpilot features build|bench`."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("build", "bench"):
        print("usage: authpilot features build --log DIR --out FILE | bench", file=sys.stderr)
        return 2
    if argv[0] == "build":
        from app.features.offline import main_build

        return main_build(argv[1:])
    from app.bench.features import main as bench

    return bench(argv[1:])
