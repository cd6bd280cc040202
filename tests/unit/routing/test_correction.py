"""The online correction (app.routing.correction): a logit offset per route x segment from the
residual sums, each level shrunk towards its parent, with its uncertainty."""

from __future__ import annotations

import math

import pytest

from app.routing.correction import (
    NO_OFFSET,
    Correction,
    CorrectionParams,
    Offset,
    apply,
    logit,
    offset,
    sigmoid,
)
from app.state.windows.residual import Residual, update_residuals

T0 = 1_767_225_600_000
P = CorrectionParams()
EMPTY = Residual(0.0, 0.0, 0.0)


def _req(bin_: str = "411111", network: str = "VISA", cc: str = "DE") -> dict[str, object]:
    return {"bin": bin_, "network": network, "issuer_country": cc, "event_time": T0}


def _learn(store: dict[bytes, bytes], route: str, n: int, rate: float, p: float,
           bin_: str = "411111") -> None:  # fmt: skip
    """n outcomes of one segment, approvals spread evenly at `rate`, the model saying p."""
    for i in range(n):
        approved = math.floor((i + 1) * rate) > math.floor(i * rate)
        out = {"route_id": route, "bin": bin_, "network": "VISA", "issuer_country": "DE",
               "approved": approved, "event_time": T0 - (n - i) * 1_000}  # fmt: skip
        update_residuals(store, out, p, P.decay)


def test_no_evidence_is_no_offset():
    corr = Correction({}.get, P)
    (o,) = corr.offsets(_req(), ["acq-eu"])
    assert o.b == 0.0 and o.weight == 0.0
    assert apply(0.73, o) == 0.73
    assert offset([EMPTY, EMPTY, EMPTY], P).b == 0.0
    off = Correction({}.get, CorrectionParams(enabled=False))
    assert off.offsets(_req(), ["a", "b"]) == [NO_OFFSET, NO_OFFSET]


def test_a_calibrated_route_keeps_offset_near_zero():
    store: dict[bytes, bytes] = {}
    _learn(store, "acq-eu", 2_000, 0.85, 0.85)
    (o,) = Correction(store.get, P).offsets(_req(), ["acq-eu"])
    assert abs(o.b) < 0.05


def test_a_collapse_from_085_to_015_is_followed_to_its_true_offset_without_overshoot():
    store: dict[bytes, bytes] = {}
    _learn(store, "acq-eu", 3_000, 0.15, 0.85)
    (o,) = Correction(store.get, P).offsets(_req(), ["acq-eu"])
    true_b = logit(0.15) - logit(0.85)  # -3.47
    assert true_b - 0.02 <= o.b <= true_b + 0.15, o.b
    assert apply(0.85, o) == pytest.approx(0.15, abs=0.02)
    # the route level alone is pulled towards the model by its 50 pseudo-outcomes, never past
    levels = [EMPTY, EMPTY, _level(store, "acq-eu", b"all")]
    route_only = offset(levels, P).b
    assert true_b < route_only < true_b / 2


def _level(store: dict[bytes, bytes], route: str, suffix: bytes) -> Residual:
    from app.state.windows.residual import read

    return read(store.get(b"res|" + route.encode() + b"|" + suffix), T0, P.decay)


def test_a_bin_with_little_weight_inherits_its_parents_offset():
    store: dict[bytes, bytes] = {}
    _learn(store, "acq-eu", 2_000, 0.3, 0.85, bin_="411111")  # the segment collapsed
    corr = Correction(store.get, P)
    (parent,) = corr.offsets(_req(bin_="499999"), ["acq-eu"])  # a BIN never seen
    assert parent.weight == 0.0 and parent.b < -2.0
    cc, route = _level(store, "acq-eu", b"cc:VISA:DE"), _level(store, "acq-eu", b"all")
    assert offset([EMPTY, cc, route], P).b == parent.b  # no weight: exactly the parent's
    # two outcomes of a new BIN, both approved against 0.85: barely moves it
    for i in range(2):
        out = {"route_id": "acq-eu", "bin": "488888", "network": "VISA", "issuer_country": "DE",
               "approved": True, "event_time": T0 - 10 + i}  # fmt: skip
        update_residuals(store, out, 0.85, P.decay)
    (few,) = corr.offsets(_req(bin_="488888"), ["acq-eu"])
    assert few.weight == pytest.approx(2.0, abs=0.01)
    assert parent.b < few.b < parent.b + 0.5
    # hundreds of approvals on that BIN: it speaks for itself (near the model again)
    _learn(store, "acq-eu", 1_000, 0.85, 0.85, bin_="477777")
    (many,) = corr.offsets(_req(bin_="477777"), ["acq-eu"])
    assert abs(many.b) < 0.3 < abs(parent.b)


def test_sd_shrinks_as_the_weight_grows():
    sds, ns = [], []
    for n in (0, 10, 100, 1_000):
        store: dict[bytes, bytes] = {}
        _learn(store, "acq-eu", n, 0.8, 0.8)
        (o,) = Correction(store.get, P).offsets(_req(), ["acq-eu"])
        ns.append(o.n)
        sds.append(o.sd(0.8))
    assert ns == sorted(ns) and len(set(ns)) == 4
    assert sds == sorted(sds, reverse=True) and len(set(sds)) == 4
    # no evidence: the BIN level's prior alone (20 pseudo-outcomes)
    assert ns[0] == pytest.approx(P.prior_segment)
    assert sds[-1] == pytest.approx(1 / math.sqrt(ns[-1] * 0.8 * 0.2))
    assert Offset(0.0, 100.0, 0.0).sd(0.999) == Offset(0.0, 100.0, 0.0).sd(0.98)  # clipped p


@pytest.mark.parametrize("rate, p, sign", [(0.0, 0.99, -1), (1.0, 0.01, 1)])
def test_the_offset_is_clamped(rate, p, sign):
    store: dict[bytes, bytes] = {}
    _learn(store, "acq-eu", 3_000, rate, p)
    (o,) = Correction(store.get, P).offsets(_req(), ["acq-eu"])
    assert o.b == sign * P.max_offset
    assert apply(p, o) == pytest.approx(sigmoid(logit(p) + sign * P.max_offset))
    small = CorrectionParams(max_offset=1.0)
    (o1,) = Correction(store.get, small).offsets(_req(), ["acq-eu"])
    assert o1.b == sign * 1.0


def test_offsets_are_per_route():
    store: dict[bytes, bytes] = {}
    _learn(store, "acq-eu", 1_000, 0.4, 0.85)
    _learn(store, "acq-us", 1_000, 0.85, 0.85)
    eu, us, new = Correction(store.get, P).offsets(_req(), ["acq-eu", "acq-us", "proc-x"])
    assert eu.b < -1.5 and abs(us.b) < 0.05 and new.b == 0.0
    assert eu.weight > 300 and new.weight == 0.0


def test_exploration_sd_is_the_country_levels_shared_by_every_bin():
    store: dict[bytes, bytes] = {}
    _learn(store, "acq-eu", 400, 0.8, 0.8, bin_="477777")  # another BIN of the same country
    corr = Correction(store.get, P)
    (o,) = corr.offsets(_req(), ["acq-eu"])  # BIN 411111: no outcomes of its own
    assert o.weight == 0.0 and o.n == pytest.approx(P.prior_segment)  # the BIN level is thin
    assert o.shared > 200  # the country level is not (400 outcomes, half-life 300: ~260)
    assert o.explore_sd(0.8) < 0.5 * o.sd(0.8)
    (fresh,) = Correction({}.get, P).offsets(_req(), ["acq-eu"])
    assert fresh.shared == pytest.approx(P.prior_segment)  # nothing seen: the prior's width
