"""`authpilot sweep` on a small grid: every candidate gets every figure, the front is
non-dominated, the report and plots are written, the pick is registered and `retrain --sweep`
reads it back; the frontier rules and the numpy models on their own."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from app.cli.main import main as cli
from app.config import get_settings
from app.lifecycle import registry
from app.models.frontier.dense import fit_logistic, fit_mlp
from app.models.frontier.frontier import Figures, dominates, pareto_front, recommend
from app.models.frontier.sweep import load_matrix, recommended_training


def _f(name, value, p99, servable=True):
    return Figures(name, "lightgbm" if servable else "mlp", servable, 0.4, 0.01, 0.8, 0.9, 0.5,
                   0.5, value, 10.0, p99 / 2, p99, 1.0, 1.0, 1, 0.1, 0.1, {})  # fmt: skip


def test_front_and_recommendation_rules():
    a, b, c, d = _f("a", 100, 5), _f("b", 120, 20), _f("c", 110, 30), _f("d", 130, 40, False)
    assert dominates(b, c) and not dominates(a, b) and not dominates(b, a)
    assert [f.name for f in pareto_front([a, b, c, d])] == ["a", "b", "d"]
    assert recommend([a, b, c, d], 25).name == "b"
    assert recommend([a, b, c, d], 100).name == "b"  # d is not servable
    assert recommend([a, b, c, d], 4) is None


def test_dense_models_learn_and_score_into_the_buffer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    z = np.nan_to_num(x)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2 * z[:, 0] - z[:, 1] * z[:, 2])))).astype(float)
    lr, mlp = fit_logistic(x, y), fit_mlp(x, y, hidden=16, epochs=20, x_valid=x, y_valid=y)
    out = np.empty(8)
    for m in (lr, mlp):
        got = m.score_many(x[:8], out, 8)
        assert got is not None and np.all((out > 0) & (out < 1))
    from app.models.training.evaluate import log_loss

    ll = {k: log_loss(y, m.raw(x, np.empty(len(x)))) for k, m in (("lr", lr), ("mlp", mlp))}
    assert ll["mlp"] < ll["lr"] - 0.01, ll  # the interaction is what a hidden layer adds


def test_matrix_presets_and_errors(tmp_path):
    assert {c.family for c in load_matrix("default")} == {"lightgbm", "xgboost", "logistic", "mlp"}
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"candidates": [{"name": "x", "family": "svm"}]}))
    with pytest.raises(ValueError, match="unknown family"):
        load_matrix(str(bad))


def test_a_small_sweep_end_to_end(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli(["sweep", "--matrix", "small", "--history-attempts", "12000", "--history-days",
                "10", "--eval-days", "2", "--payments", "400", "--reps", "200", "--budget-us",
                "1000", "--out", str(out), "--work", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    said = capsys.readouterr().out
    doc = json.loads((out / "sweep.json").read_text())
    figs = doc["figures"]
    assert [f["name"] for f in figs] == ["lgbm-tiny", "logistic", "mlp-8"]
    for f in figs:
        for k, v in f.items():
            if isinstance(v, float):
                assert math.isfinite(v), (f["name"], k)
        assert f["p50_us"] <= f["p99_us"] and f["size_bytes"] > 0 and 0 < f["log_loss"] < 1
    objs = [Figures(**f) for f in figs]
    front = [f for f in objs if f.name in doc["front"]]
    assert front and all(not dominates(o, f) for f in front for o in objs)
    assert doc["recommended"]["name"] == "lgbm-tiny"  # the only servable one
    for name in ("report.md", "frontier.png", "logloss_latency.png"):
        assert (out / name).stat().st_size > 0
    assert "Recommended under a 1000 us p99 budget: lgbm-tiny" in (out / "report.md").read_text()
    assert "registered router/sweep-" in said
    rows = registry.listing(get_settings())
    assert any(r.version.endswith("-lgbm-tiny") for r in rows)
    trainer, rounds, params = recommended_training(out / "sweep.json")
    assert (trainer, rounds, params["num_leaves"]) == ("lightgbm", 20, 4)
