"""FeatureState (compiled kernel) equals the numpy FeatureState it replaced, bit for bit.

Random streams of outcomes and requests (cards, merchants, BINs and routes drawn from small
pools so keys collide; times out of order and far apart; 0-5 candidates, repeated routes,
missing acquirer countries, unknown enums): after every outcome both keep the same bytes under
the same keys in every owner's store, and every request's rows have the same bits, NaN
positions included. The online/offline parity (test_parity.py) runs on the compiled path.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.features.definitions import ENTITIES, N_FEATURES, OWNERS
from app.features.online import PLANS, FeatureState, new_buffer
from app.features.reference import ReferenceFeatureState

T0 = 1_767_225_600_000
DAY_MS = 86_400_000
TEXT = st.sampled_from(["a", "b", "é|x", "7"])
CARDS = st.sampled_from(["c1", "c2", "c3|z", "kä"])
MERCHANTS = st.sampled_from(["m1", "m2", "m|3"])
BINS = st.sampled_from(["411111", "545454"])
COUNTRIES = st.sampled_from(["DE", "US", "GB"])
ROUTES = st.sampled_from(["r1", "r2", "r3", "r|4", "rø"])
_TIES = st.sampled_from([T0, T0 + 1, T0 + 299_999, T0 + 300_000])  # same ms, bucket edges
TIMES = st.one_of(
    _TIES,
    _TIES,
    st.integers(-40 * DAY_MS, 40 * DAY_MS).map(lambda d: T0 + d),
    st.integers(-3_600_000, 3_600_000).map(lambda d: T0 + d),
    st.integers(0, 2**45),
)
AMOUNTS = st.one_of(st.integers(1, 20_000), st.integers(1, 2**62))


def _common():
    return {
        "event_time": TIMES,
        "card_fingerprint": CARDS,
        "merchant_id": MERCHANTS,
        "bin": BINS,
        "network": st.sampled_from(["VISA", "MASTERCARD", "AMEX", "unknown"]),
        "issuer_country": COUNTRIES,
        "amount_minor": AMOUNTS,
        "attempt": st.integers(1, 3),
        "initiator": st.sampled_from(["CIT", "MIT"]),
    }


OUTCOMES = st.fixed_dictionaries(
    {
        **_common(),
        "route_id": ROUTES,
        "approved": st.booleans(),
        "failure_side": st.sampled_from(["NONE", "ISSUER", "ROUTE"]),
        "response_code": st.sampled_from(["00", "05", "51", "14", "N7", "R1"]),
    }
)
CANDIDATE = st.fixed_dictionaries(
    {"route_id": ROUTES, "fee_minor": st.integers(0, 100)},
    optional={"acquirer_country": st.one_of(st.none(), COUNTRIES)},
)
REQUESTS = st.fixed_dictionaries(
    {
        **_common(),
        "candidates": st.lists(CANDIDATE, max_size=5),
        "channel": st.sampled_from(["ECOM", "POS", "MOTO"]),
        "recurring": st.booleans(),
        "sca_required": st.booleans(),
        "three_ds": st.booleans(),
        "funding": st.sampled_from(["CREDIT", "DEBIT", "other"]),
    }
)
EVENT = st.one_of(st.tuples(st.just("outcome"), OUTCOMES), st.tuples(st.just("request"), REQUESTS))
EVENTS = st.lists(EVENT, min_size=2, max_size=40)


def states() -> tuple[FeatureState, ReferenceFeatureState]:
    return FeatureState({o: {} for o in OWNERS}), ReferenceFeatureState({o: {} for o in OWNERS})


@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_updates_and_rows_are_the_references_bit_for_bit(events):
    fast, slow = states()
    got_buf, want_buf = np.full((8, N_FEATURES), 3.0), np.full((8, N_FEATURES), -3.0)
    for kind, rec in events:
        if kind == "outcome":
            for owner in OWNERS:
                fast.update_outcome(rec, owner)
                slow.update_outcome(rec, owner)
            assert fast.stores == slow.stores  # same keys, same bytes, every owner
            continue
        got = fast.fill(rec, got_buf)
        want = slow.fill(rec, want_buf)
        assert got.shape == want.shape == (len(rec["candidates"]), N_FEATURES)
        assert got.tobytes() == want.tobytes()  # every bit: NaN positions, -0.0
        for name in ("card", "card_merchant", "card_merchant_amount"):
            t = rec["event_time"]
            assert fast.card_window(name, rec, t) == slow.card_window(name, rec, t)


@settings(max_examples=200, deadline=None)
@given(OUTCOMES, ROUTES)
def test_keys_are_the_entity_keys(rec, route):
    """The kernel's key recipes give Entity.key's bytes (the tables' keys); the kernel's own
    C builder is held to Key.of in tests/unit/state/test_kernel.py, and to Entity.key by the
    stores' equality above."""
    for p in PLANS:
        assert p.key.of(rec, route) == p.entity.key(rec, route).encode()


def test_the_rows_see_history():
    """Not a vacuous equality: after outcomes, rows carry counts, rates and card extras."""
    fast, _ = states()
    out = {"event_time": T0, "card_fingerprint": "c", "merchant_id": "m", "bin": "411111",
           "network": "VISA", "issuer_country": "DE", "amount_minor": 100, "attempt": 1,
           "initiator": "CIT", "route_id": "r1", "approved": False, "failure_side": "ISSUER",
           "response_code": "05"}  # fmt: skip
    for owner in OWNERS:
        fast.update_outcome(out, owner)
    req = {**out, "event_time": T0 + 1000, "channel": "ECOM", "recurring": False,
           "sca_required": False, "three_ds": False, "funding": "CREDIT",
           "candidates": [{"route_id": "r1", "fee_minor": 10, "acquirer_country": "DE"},
                          {"route_id": "r2", "fee_minor": 20}]}  # fmt: skip
    rows = fast.fill(req, new_buffer())
    names = [f"{e.name}_{w}_{m}" for e in ENTITIES for w, m in e.counts]
    from app.features.definitions import FEATURE_NAMES

    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    assert rows[0, col["card_24h_n"]] == rows[1, col["card_24h_n"]] == 1.0
    assert rows[0, col["route_1h_n"]] == 1.0 and rows[1, col["route_1h_n"]] == 0.0
    assert rows[0, col["route_1h_ok_rate"]] == 0.0 and np.isnan(rows[1, col["route_1h_ok_rate"]])
    assert rows[0, col["secs_since_last_decline"]] == 1.0
    assert rows[0, col["route_fee_bps"]] == 1000.0 and rows[1, col["route_fee_bps"]] == 2000.0
    assert rows[0, col["cross_border"]] == 0.0 and rows[1, col["cross_border"]] == 0.0
    assert all(n in col for n in names)
    # a request at the decline's own millisecond does not see it (strictly before), like SQL
    same_ms = fast.fill({**req, "event_time": T0}, new_buffer())
    assert np.isnan(same_ms[:, col["secs_since_last_decline"]]).all()
    assert np.isnan(same_ms[:, col["last_decline_hard"]]).all()
