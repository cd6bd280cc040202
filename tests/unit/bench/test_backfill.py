"""The backfill benchmark runs end to end on a small log and checks the states are equal."""

from __future__ import annotations

import math

from app.bench.backfill import run


def test_the_benchmark_compares_equal_states():
    r = run(attempts=3000, days=2, repeats=1, cli=False)
    assert r.outcomes == 3000
    assert r.identical
    assert set(r.keys) == {"card-features", "feature-state", "route-stats"}
    assert min(r.keys.values()) > 0
    assert math.isnan(r.cli_s) and r.check_s > 0 and r.compute_s > 0 and r.reference_s > 0
