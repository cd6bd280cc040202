"""choose(): the logged propensity is the exact probability of the choice under the draw, with
uniform exploration, a pick by the caller's weights (posterior win shares), both, or neither."""

from __future__ import annotations

from collections import Counter

import pytest

from app.routing import choice
from app.routing.choice import choose, uniform_draws

SCORES = [5.0, 9.0, 8.5, 2.0, 9.0]  # 1 and 4 tie on score: the cheaper (fee) wins
FEES = [10, 12, 10, 5, 15]
ELIGIBLE = [0, 1, 2, 4]  # 3 eliminated

CASES = {
    "uniform only": dict(explore=0.1),
    # weights in twelfths (cell edges of the grid below); 3 is eliminated and weighs 0
    "weights only": dict(explore=0.0, weights=[0, 8 / 12, 3 / 12, 0, 1 / 12]),
    "both": dict(explore=0.06, weights=[1 / 12, 6 / 12, 5 / 12, 0, 0]),  # 1 is the best
    "pool and weights": dict(explore=0.1, explore_pool=[0, 2], weights=[0, 9 / 12, 0, 0, 3 / 12]),
    "nothing to explore": dict(explore=0.0),
    "weights all on the best": dict(explore=0.05, weights=[0, 1, 0, 0, 0]),
}

# Cell centres of a 200 x 12 grid of (u_explore, u_pick): every tier boundary above (multiples
# of 0.005 for u_explore; 1/2, 1/3, 1/4 and twelfths for u_pick) is a cell edge, so counting
# cells gives each choice's probability exactly.
GRID_E, GRID_P = 200, 12


def _enumerate(monkeypatch: pytest.MonkeyPatch, kw: dict) -> tuple[Counter, dict[int, float]]:
    cells = [((i + 0.5) / GRID_E, (j + 0.5) / GRID_P) for i in range(GRID_E) for j in range(GRID_P)]
    draws = iter(cells)
    monkeypatch.setattr(choice, "uniform_draws", lambda _rid: next(draws))
    counts: Counter = Counter()
    props: dict[int, float] = {}
    for _ in cells:
        chosen, prop, _ = choose("r", SCORES, FEES, ELIGIBLE, **kw)
        counts[chosen] += 1
        assert props.setdefault(chosen, prop) == prop  # one propensity per candidate
    return counts, props


@pytest.mark.parametrize("case", list(CASES))
def test_the_propensity_of_each_choice_is_its_probability_over_the_draws(monkeypatch, case):
    kw = CASES[case]
    counts, props = _enumerate(monkeypatch, kw)
    total = GRID_E * GRID_P
    for i, c in counts.items():
        assert props[i] == pytest.approx(c / total, abs=1e-9), (i, props[i], c / total)
    assert sum(props.values()) == pytest.approx(1.0, abs=1e-9)
    assert 3 not in counts  # eliminated routes are never chosen
    assert max(counts, key=counts.__getitem__) == 1  # the best: score 9.0 at the lower fee


def test_weights_split_the_non_exploring_share_and_only_the_weighted_routes_get_it(monkeypatch):
    counts, props = _enumerate(monkeypatch, CASES["weights only"])
    assert set(counts) == {1, 2, 4}
    assert props[1] == pytest.approx(8 / 12) and props[2] == pytest.approx(3 / 12)
    assert props[4] == pytest.approx(1 / 12)
    counts, props = _enumerate(monkeypatch, CASES["both"])
    assert props[2] == pytest.approx(0.06 / 4 + 0.94 * 5 / 12)
    assert props[1] == pytest.approx(0.06 / 4 + 0.94 * 6 / 12)
    assert props[0] == pytest.approx(0.06 / 4 + 0.94 / 12)
    assert props[4] == pytest.approx(0.06 / 4)
    # all the weight on the best is the greedy choice
    _, props = _enumerate(monkeypatch, CASES["weights all on the best"])
    assert props[1] == pytest.approx(0.95 + 0.05 / 4)


@pytest.mark.parametrize("case", ["uniform only", "both", "pool and weights"])
def test_hashed_request_ids_choose_at_the_logged_propensities(case):
    """The real draw (a hash of the request id): empirical shares within 4 sd of the logged
    propensities, and every logged propensity agrees with the other requests' for that route."""
    n = 20_000
    kw = CASES[case]
    counts: Counter = Counter()
    props: dict[int, float] = {}
    explored = 0
    for k in range(n):
        chosen, prop, exp = choose(f"req-{k}", SCORES, FEES, ELIGIBLE, **kw)
        counts[chosen] += 1
        explored += exp
        assert props.setdefault(chosen, prop) == prop
    for i, c in counts.items():
        p = props[i]
        assert abs(c / n - p) <= 4 * (p * (1 - p) / n) ** 0.5 + 1e-12, (i, c / n, p)
    assert sum(props.values()) == pytest.approx(1.0)
    w = kw.get("weights")
    assert explored / n <= kw["explore"] + (1 - max(w) if w else 0.0) + 0.01


def test_a_lone_best_with_nothing_to_explore_is_certain():
    assert choose("x", [1.0, 3.0], [1, 1], [1], 0.2) == (1, 1.0, False)
    # weight on another candidate makes even a lone eligible best a draw
    for k in range(50):
        chosen, prop, explored = choose(f"x{k}", [1.0, 3.0], [1, 1], [1], 0.0, None, [0.25, 0.75])
        assert prop == (0.25 if chosen == 0 else 0.75) and explored == (chosen == 0)


def test_draws_are_deterministic_per_request_id():
    assert uniform_draws("abc") == uniform_draws("abc") != uniform_draws("abd")
    u, v = uniform_draws("abc")
    assert 0.0 <= u < 1.0 and 0.0 <= v < 1.0
