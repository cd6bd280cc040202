"""The gates are pure: each check passes or refuses on the figures, with the reason."""

from __future__ import annotations

import math

from app.lifecycle.gates import (
    Gates,
    ModelFigures,
    ShadowFigures,
    ValueDiff,
    offline_gate,
    shadow_gate,
)

G = Gates()
CHAMP = ModelFigures(log_loss=0.45, ece=0.01, value=1500.0)


def test_a_better_model_passes_and_a_worse_one_is_refused_with_reasons():
    good = ModelFigures(0.44, 0.012, 1510.0)
    assert offline_gate(G, good, CHAMP, ValueDiff(10, -50, 70, 900), 0.55).passed
    worse = ModelFigures(0.46, 0.012, 1500.0)
    v = offline_gate(G, worse, CHAMP, ValueDiff(0, -60, 60, 900), 0.55)
    assert not v.passed and v.reasons() == ["log loss: 0.4600 vs champion 0.4500 (+0.002 allowed)"]
    miscal = ModelFigures(0.449, 0.035, 1500.0)
    assert "calibration" in offline_gate(G, miscal, CHAMP, None, 0.55).reasons()[0]


def test_the_value_check_refuses_only_a_significantly_worse_model_with_evidence():
    cand = ModelFigures(0.44, 0.01, 1400.0)
    noisy = offline_gate(G, cand, CHAMP, ValueDiff(-100, -250, 50, 900), 0.55)
    assert noisy.passed  # worse by the point estimate, not significantly
    worse = offline_gate(G, cand, CHAMP, ValueDiff(-100, -180, -20, 900), 0.55)
    assert not worse.passed and worse.reasons()[0].startswith("off-policy value")
    thin = offline_gate(G, cand, CHAMP, ValueDiff(-100, -180, -20, 40), 0.55)
    assert thin.passed and "not decisive" in thin.render()  # 40 informative attempts < 100


def test_the_first_model_must_beat_the_success_rate_baseline():
    assert offline_gate(G, ModelFigures(0.50, 0.01, math.nan), None, None, 0.55).passed
    v = offline_gate(G, ModelFigures(0.56, 0.01, math.nan), None, None, 0.55)
    assert not v.passed and "success-rate baseline" in v.reasons()[0]


def test_shadow_gate():
    ok = ShadowFigures(6000, 0.76, 0.008, 0.848, 0.779, 0.917, 0.887, 201)
    assert shadow_gate(G, ok).passed  # the closed-loop test's figures
    worse = ShadowFigures(6000, 0.76, 0.008, 0.80, 0.76, 0.84, 0.887, 400)
    assert shadow_gate(G, worse).reasons()[0].startswith("shadow off-policy approval")
    few = ShadowFigures(50, 0.76, 0.008, 0.85, 0.7, 0.95, 0.887, 20)
    assert shadow_gate(G, few).reasons() == ["shadow attempts: 50 (need 200)"]
    broken = ShadowFigures(6000, 0.05, 0.3, 0.85, 0.8, 0.9, 0.887, 400)
    assert len(shadow_gate(G, broken).reasons()) == 2  # agreement and calibration
