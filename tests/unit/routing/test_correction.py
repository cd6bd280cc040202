"""The online correction (app.routing.correction): a logit offset per route x segment from the
residual sums, each level shrunk towards its parent, with its uncertainty."""

from __future__ import annotations

import math

import numpy as np
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
    cc, route = _level(store, "acq-eu", b"ic:DE"), _level(store, "acq-eu", b"all")
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


def _learn_cc(store: dict[bytes, bytes], route: str, n: int, rate: float, p: float,
              cc: str, seed: int | None = None) -> None:  # fmt: skip
    """n outcomes of route x (VISA, cc) over 50 BINs; approvals evenly at `rate`, or drawn."""
    rng = np.random.default_rng(seed) if seed is not None else None
    for i in range(n):
        if rng is None:
            approved = math.floor((i + 1) * rate) > math.floor(i * rate)
        else:
            approved = bool(rng.random() < rate)
        out = {"route_id": route, "bin": f"4{i % 50:05d}", "network": "VISA",
               "issuer_country": cc, "approved": approved,
               "event_time": T0 - (n - i) * 1_000}  # fmt: skip
        update_residuals(store, out, p, P.decay)


def test_calibrated_segments_have_no_dispersion_and_draw_nothing():
    store: dict[bytes, bytes] = {}
    for r in ("acq-eu", "acq-us"):
        _learn_cc(store, r, 400, 0.8, 0.8, "DE")
    offs = Correction(store.get, P).offsets(_req(), ["acq-eu", "acq-us", "proc-x"])
    assert [o.tau2 for o in offs] == [0.0] * 3
    assert [o.explore_sd(0.8) for o in offs] == [0.0] * 3  # proc-x unmeasured, but no reason


def test_noise_alone_rarely_sets_a_dispersion():
    """Binomial noise on calibrated routes: tau^2 > 0 needs a segment beyond 2 standard errors
    of its route (under 5% of keys per route, less as the route level shares the noise;
    measured 1 request in 200 over 3 routes), and then it is small."""
    hits, taus = 0, []
    for seed in range(200):
        store: dict[bytes, bytes] = {}
        for j, r in enumerate(("acq-eu", "acq-us", "proc-global")):
            _learn_cc(store, r, 600, 0.8, 0.8, "GB", seed=seed * 6 + j)  # the route's bulk
            _learn_cc(store, r, 150, 0.8, 0.8, "DE", seed=seed * 6 + 3 + j)
        (o,) = Correction(store.get, P).offsets(_req(), ["acq-eu"])
        if o.tau2 > 0:
            hits += 1
            taus.append(math.sqrt(o.tau2))
    assert hits / 200 < 0.08, hits
    assert all(t < 0.5 for t in taus), taus


def test_a_moved_segment_widens_every_candidates_segment_prior():
    """An issuer shift: route acq-eu's French cards approve at 1 logit under the model. The
    other routes' estimates for French cards are suspect too: their exploration sd becomes
    ~tau (~1 logit) where they have no outcomes, and the moved segment's own offset follows
    its evidence sooner than under the fixed 20-outcome prior."""
    store: dict[bytes, bytes] = {}
    rate = sigmoid(logit(0.8) - 1.0)  # 0.595
    _learn_cc(store, "acq-eu", 60, rate, 0.8, "FR")
    _learn_cc(store, "acq-eu", 600, 0.8, 0.8, "DE")  # the rest of the route is fine
    fr = _req(bin_="499999", cc="FR")  # a BIN without outcomes: the country level decides
    eu, gb = Correction(store.get, P).offsets(fr, ["acq-eu", "acq-gb"])
    assert eu.tau2 == gb.tau2 and 0.3 < math.sqrt(eu.tau2) < 1.3, eu.tau2
    assert gb.explore_sd(0.8) == pytest.approx(math.sqrt(gb.tau2))  # nothing measured: tau
    assert eu.explore_sd(0.8) < 0.6 * gb.explore_sd(0.8)  # 60 outcomes of its own
    fixed = offset([EMPTY, _level(store, "acq-eu", b"ic:FR"),
                    _level(store, "acq-eu", b"all")], P)  # fmt: skip
    assert -1.0 < eu.b < fixed.b < 0.0  # closer to the true -1 than the fixed prior's
    de = Correction(store.get, P).offsets(_req(), ["acq-eu", "acq-gb"])
    assert [o.tau2 for o in de] == [0.0, 0.0]  # German cards: nothing moved there
