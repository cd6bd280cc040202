"""A trained, calibrated model beats the success-rate baseline on a later window, calibrated."""

from __future__ import annotations

import json

import pytest

from app.features.offline import build_matrix
from app.model.train import run, time_split
from app.sampleworld import write_sample_log


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    log = write_sample_log(d / "log", n=40000, seed=9)
    build_matrix(log).write_parquet(str(d / "matrix.parquet"))
    summary = run(d / "matrix.parquet", d / "out", "router", "t1")
    return d, summary


def test_model_beats_success_rate_baseline_and_is_calibrated(trained):
    _, s = trained
    m, base = s["metrics_test"]["model (calibrated)"], s["metrics_test"]["success-rate baseline"]
    assert m["log_loss"] < base["log_loss"], (m, base)
    assert m["ece"] <= 0.02
    assert m["roc_auc"] > 0.5


def test_report_and_artifacts_are_written(trained):
    d, s = trained
    out = d / "out"
    for f in ("model.txt", "calibration.json", "metrics.json", "report.md", "reliability.png",
              "pr_curve.png", "feature_importance.png"):  # fmt: skip
        assert (out / f).stat().st_size > 0, f
    report = (out / "report.md").read_text()
    assert "success-rate baseline" in report and "By network" in report
    assert json.loads((out / "metrics.json").read_text())["feature_hash"] == s["feature_hash"]


def test_split_is_by_time(trained):
    import pandas as pd

    d, _ = trained
    sp = time_split(pd.read_parquet(d / "matrix.parquet"))
    assert sp.train.event_time.max() <= sp.valid.event_time.min()
    assert sp.valid.event_time.max() <= sp.test.event_time.min()
