"""`authpilot retrain`'s train stage on the embedded MLflow store (promotion is the broker
test's): a model trained before an issuer shift is replaced by one that saw it; a training set
broken on purpose is refused, registered as refused, and the champion alias does not move."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.config import get_settings
from app.lifecycle import registry, tracking
from app.lifecycle.gates import Gates
from app.lifecycle.pipeline import PipelineError, RetrainOptions, retrain
from app.sim.generate import simulate
from tests.modelkit import sabotage_log, slice_log

DAY_MS = 86_400_000


def _log(tmp_path, scenario):
    out = tmp_path / scenario
    simulate(scenario, attempts=30_000, seed=3, out_dir=out, oracle=False)
    t = pq.read_table(out / "requests.parquet", columns=["event_time"]).column(0).to_numpy()
    return out, int(t.min()), t


def _opts(tmp_path, log, version, **kw):
    return RetrainOptions(
        log=log, work=tmp_path / "work", promote=False, version=version, rounds=200, **kw
    )


def test_a_drifted_world_gets_a_passing_challenger(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHPILOT_MODEL_DIR", str(tmp_path / "models"))
    s = get_settings()
    log, t0, _ = _log(tmp_path, "issuer_shift")  # the shift starts on day 14
    first = retrain(s, _opts(tmp_path, slice_log(log, tmp_path / "pre", t0 + 13 * DAY_MS), "pre"))
    assert first.ok and first.action == "registered"
    assert registry.by_alias(s, "router", "champion") is None  # --no-promote moved nothing
    registry.set_alias(s, "router", "pre", "champion")
    got = retrain(s, _opts(tmp_path, log, "post"))
    print(got.summary)
    assert got.ok, got.summary
    assert "champion pre" in got.summary and "informative attempts" in got.summary
    run = tracking.client(s).get_run(got.run_id).data
    assert run.metrics["eval.candidate.log_loss"] < run.metrics["eval.champion.log_loss"]
    assert run.metrics["gate1.passed"] == 1.0
    tags = {r.version: r.tags for r in registry.listing(s)}
    assert tags["post"]["authpilot.gate"] == "passed"


def test_a_sabotaged_training_set_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHPILOT_MODEL_DIR", str(tmp_path / "models"))
    s = get_settings()
    log, t0, t = _log(tmp_path, "steady")
    retrain(s, _opts(tmp_path, slice_log(log, tmp_path / "pre", t0 + 14 * DAY_MS), "good"))
    registry.set_alias(s, "router", "good", "champion")
    bad = sabotage_log(log, tmp_path / "bad", int(np.quantile(t, 0.85)))
    got = retrain(s, _opts(tmp_path, bad, "bad"))
    print(got.summary)
    assert not got.ok and got.action == "trained-refused"
    assert "log loss: REFUSE" in got.summary or "calibration: REFUSE" in got.summary
    assert registry.by_alias(s, "router", "champion").version == "good"
    tags = {r.version: r.tags for r in registry.listing(s)}
    assert tags["bad"]["authpilot.gate"] == "refused" and "REFUSE" in tags["bad"]["authpilot.gate1"]


def test_gates_from_a_file_name_unknown_keys(tmp_path):
    f = tmp_path / "g.json"
    f.write_text('{"max_ece": 0.02, "max_eece": 1}')
    with pytest.raises(ValueError, match="max_eece"):
        Gates.from_file(f)
    f.write_text('{"max_ece": 0.02}')
    assert Gates.from_file(f).max_ece == 0.02


def test_judging_without_a_challenger_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="no challenger"):
        retrain(get_settings(), RetrainOptions(work=tmp_path, stage="shadow"))
