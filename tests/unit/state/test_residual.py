"""Residual sums per route x segment (app.state.windows.residual): decay in event time and in
outcomes, late outcomes, the three keys, and what the route-sr GlobalTable publishes."""

from __future__ import annotations

import math

import pytest

from app.state.windows.count import CountRing, snapshot_bytes, update_success_rate
from app.state.windows.residual import (
    PREFIX,
    SIZE,
    Decay,
    Residual,
    published,
    read,
    residual_keys,
    update,
    update_residuals,
)

HOUR = 3_600_000
T0 = 1_767_225_600_000
D = Decay(half_life_ms=6 * HOUR, half_life_outcomes=300.0)
NO_COUNT = Decay(half_life_ms=6 * HOUR, half_life_outcomes=math.inf)  # time decay only
NO_TIME = Decay(half_life_ms=math.inf, half_life_outcomes=300.0)  # count decay only


def test_one_outcome_reads_back_and_halves_every_half_life_of_event_time():
    v = update(None, True, 0.8, T0, D)
    assert len(v) == SIZE == 32
    assert read(v, T0, D) == Residual(1.0, 1.0, 0.8)
    assert read(v, T0 + 6 * HOUR, D) == pytest.approx(Residual(0.5, 0.5, 0.4))
    assert read(v, T0 + 18 * HOUR, D) == pytest.approx(Residual(0.125, 0.125, 0.1))
    assert read(v, T0 - HOUR, D) == read(v, T0, D)  # no decay back in time
    assert read(None, T0, D) == Residual(0.0, 0.0, 0.0)


def test_an_outcome_halves_every_half_life_of_later_outcomes_of_its_key():
    v = update(None, True, 0.9, T0, NO_TIME)
    for _ in range(300):
        v = update(v, False, 0.9, T0, NO_TIME)
    r = read(v, T0, NO_TIME)
    assert r.approvals == pytest.approx(0.5)  # the one approval, 300 outcomes ago
    g = D.per_outcome
    assert r.weight == pytest.approx((1 - g**301) / (1 - g))  # a geometric sum
    assert r.p == pytest.approx(0.9 * r.weight)
    # a busy key's weight tends to 1 / (1 - g) ~ 433 outcomes: its evidence stays recent
    for _ in range(5_000):
        v = update(v, False, 0.9, T0, NO_TIME)
    assert read(v, T0, NO_TIME).weight == pytest.approx(1 / (1 - g), rel=1e-5)  # g^5301 ~ 5e-6


def test_both_decays_compose_on_a_later_outcome():
    v = update(None, True, 0.5, T0, D)
    v = update(v, False, 0.7, T0 + 6 * HOUR, D)
    f = D.per_outcome * 0.5
    assert read(v, T0 + 6 * HOUR, D) == pytest.approx(Residual(f + 1, f, 0.5 * f + 0.7))


def test_an_older_outcome_is_added_with_its_decayed_weight():
    v = update(None, True, 0.6, T0 + 6 * HOUR, D)
    late = update(v, False, 0.8, T0, D)  # arrives after, happened 6 h before
    g = D.per_outcome
    assert read(late, T0 + 6 * HOUR, D) == pytest.approx(Residual(g + 0.5, g, 0.6 * g + 0.4))
    # the value stays at its newest time: reading then does not decay the newer outcome
    assert read(late, T0 + 6 * HOUR, D).approvals == pytest.approx(g)


def test_time_decay_does_not_depend_on_arrival_order():
    events = [(True, 0.9, T0), (False, 0.7, T0 + 2 * HOUR), (True, 0.8, T0 + HOUR),
              (False, 0.6, T0 + 5 * HOUR), (True, 0.95, T0 + 30 * 60_000)]  # fmt: skip
    at = T0 + 8 * HOUR
    reads = []
    for order in (events, sorted(events, key=lambda e: e[2]), events[::-1]):
        v = None
        for y, p, t in order:
            v = update(v, y, p, t, NO_COUNT)
        reads.append(read(v, at, NO_COUNT))
    for r in reads[1:]:
        assert r == pytest.approx(reads[0], rel=1e-12)
    want_w = sum(2 ** (-(at - t) / (6 * HOUR)) for _, _, t in events)
    assert reads[0].weight == pytest.approx(want_w)


def _outcome(**kw: object) -> dict[str, object]:
    base = {"route_id": "acq-eu", "bin": "411111", "network": "VISA", "issuer_country": "DE",
            "approved": True, "event_time": T0, "failure_side": "NONE"}  # fmt: skip
    return base | kw


def test_update_residuals_writes_the_three_keys_and_skips_unusable_ps():
    assert residual_keys("acq-eu", "411111", "VISA", "DE") == (
        b"res|acq-eu|bin:411111", b"res|acq-eu|ic:DE", b"res|acq-eu|all")  # fmt: skip
    store: dict[bytes, bytes] = {}
    update_residuals(store, _outcome(), 0.8, D)
    assert sorted(store) == sorted(residual_keys("acq-eu", "411111", "VISA", "DE"))
    assert all(read(v, T0, D) == Residual(1.0, 1.0, 0.8) for v in store.values())
    before = dict(store)
    for p in (math.nan, 0.0, 1.0, -0.1, 1.5):  # no model p, or not a probability
        update_residuals(store, _outcome(approved=False), p, D)
    assert store == before
    update_residuals(store, _outcome(bin="522222", network="MASTERCARD"), 0.4, D)
    assert read(store[b"res|acq-eu|all"], T0, D).weight == pytest.approx(1 + D.per_outcome)
    assert read(store[b"res|acq-eu|bin:411111"], T0, D).weight == 1.0


def test_published_keeps_residuals_and_snapshots_rings():
    store: dict[bytes, bytes] = {}
    out = _outcome()
    update_success_rate(store, out, CountRing(10))
    update_residuals(store, out, 0.8, D)
    assert len(store) == 6
    for k, v in store.items():
        if k.startswith(PREFIX):
            assert published(k, v) == v
        else:
            assert published(k, v) == snapshot_bytes(v) and len(published(k, v)) < len(v)
