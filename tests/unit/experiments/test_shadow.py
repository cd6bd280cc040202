"""Shadow report on simulator logs whose truth is known: off-policy estimates, agreement,
calibration, and the greedy-route contract with the routing choice rule."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiments.eventlog import read_event_log, scores_column
from app.experiments.shadow import greedy_routes, shadow_report
from tests.unit.experiments.simlog import simulate_log, write_log

OPE_ROWS = 150_000  # DR standard error ~0.0017, SNIPS ~0.0020: one point is 5 standard errors


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_off_policy_estimates_of_a_challenger_are_within_one_point_of_its_true_rate(
    world, tmp_path, seed
):
    """Logger: epsilon-greedy (epsilon 0.5) on each merchant's default route, exact
    propensities; challenger: greedy on a noisy copy of the truth, a different policy (it picks
    the logged route on about a third of the attempts)."""
    log = simulate_log(world, seed, n=OPE_ROWS)
    r = shadow_report(read_event_log(write_log(tmp_path, log), need_shadow=True))
    (c,) = r.challengers
    e = c.estimate
    truth = log.challenger_truth
    print(f"\nseed {seed}: truth {truth:.4f} DR {e.dr:.4f} ({e.dr - truth:+.4f}) SNIPS "
          f"{e.snips:.4f} ({e.snips - truth:+.4f}) IPS {e.ips:.4f} ({e.ips - truth:+.4f}) "
          f"logged {c.logged_approval.mean:.4f} ESS {e.effective_n:.0f}")  # fmt: skip
    assert abs(e.dr - log.challenger_truth) < 0.01
    assert abs(e.snips - log.challenger_truth) < 0.01
    # the logger is not the challenger: its own rate is a different, lower number
    assert c.logged_approval.mean < log.challenger_truth - 0.02
    assert c.greedy_agreement == pytest.approx(log.agreement)
    assert c.bad_propensity == 0 and c.attempts == OPE_ROWS


def test_shadow_agreement_and_calibration(world, tmp_path):
    good = simulate_log(world, 11, n=40_000)
    r = shadow_report(read_event_log(write_log(tmp_path / "good", good), need_shadow=True))
    (c,) = r.challengers
    assert c.agreement.mean == pytest.approx(good.agreement)  # shadow chose greedily
    assert c.calibration.ece < 0.02  # p = truth + zero-mean noise: calibrated
    assert int(c.calibration.count.sum()) == round(good.agreement * 40_000)
    biased = simulate_log(world, 11, n=40_000, challenger_bias=0.06)
    r = shadow_report(read_event_log(write_log(tmp_path / "biased", biased), need_shadow=True))
    assert r.challengers[0].calibration.ece == pytest.approx(0.06, abs=0.015)


def test_greedy_routes_follow_the_policies_choice_rule():
    """Contract: the vectorized greedy route equals app.routing.choice.choose without
    exploration, ties and eliminated routes included."""
    from app.routing.choice import choose

    rng = np.random.default_rng(5)
    lists = []
    for _ in range(2000):
        k = int(rng.integers(1, 5))
        lists.append([{"route_id": f"r{i}", "p_approve": 0.5, "score": float(rng.integers(0, 3)),
                       "fee_minor": int(rng.integers(0, 3)), "eliminated": bool(rng.random() < 0.3)}
                      for i in range(k)])  # fmt: skip
    got = greedy_routes(scores_column(lists, "test"))
    for g, sc in zip(got, lists, strict=True):
        elig = [i for i, x in enumerate(sc) if not x["eliminated"]] or list(range(len(sc)))
        best, prop, _ = choose("x", [x["score"] for x in sc], [x["fee_minor"] for x in sc],
                               elig, 0.0)  # fmt: skip
        assert g == sc[best]["route_id"] and prop == 1.0
