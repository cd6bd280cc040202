"""`authpilot demo` for a short run on the real broker (small history, low rate): the report
names every arm with its figures, the incident is detected (the outage route is demoted), the
challenger shadowed, and the plots are written. The last line names the report."""

from __future__ import annotations

import pytest

from app.cli.main import main as cli

# ~80 s (45 s of traffic, the rest the 15k-attempt models and the worker's start). 100/s, not
# 60: the outage lasts 14 s of wall time here and the learning arms leave the route within a
# few attempts, so at 60/s the route once saw too few outcomes to be demoted. In the default
# suite (issue 20 asks for it in CI): it was in `make test-slow` while the broker outage test
# that follows it failed in 2 of 2 full runs after it (29 decisions on the route before the
# demotion, in-flight ones under the load it leaves; a restore during the outage). Both were
# the outage test's and route health's: it now counts the outcomes the detector saw, and a
# restore must refute the route as it was (app.monitoring.route_health.restore_evidence).
pytestmark = pytest.mark.kafka


def test_demo_short_run_writes_the_report(kafka_bootstrap, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTHPILOT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("AUTHPILOT_WEB_PORT", "16166")
    monkeypatch.chdir(tmp_path)  # the worker's var/ and the MLflow store land here
    out = tmp_path / "demo"
    assert cli(["demo", "--duration", "45", "--rate", "100", "--history-attempts", "15000",
                "--out", str(out), "--plain"]) == 0  # fmt: skip
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"report: {out / 'report.md'}"
    text = (out / "report.md").read_text()
    for arm in ("| ev |", "| sr |", "| holdout |"):
        assert arm in text, text
    assert "ROUTE_DEMOTED** acq-de" in text, text  # the outage, detected
    assert "challenger v2 (XGBoost) in shadow" in text
    assert "Shadow challenger agreement with the champion's route: " in text
    assert "of 0 requests" not in text
    assert "## By phase of the story" in text  # the incident within its phase, per arm
    for phase in ("| quiet | ev |", "| RouteOutage acq-de on | holdout |",
                  "| IssuerShift acq-gb on | ev |"):  # fmt: skip
        assert phase in text, text
    assert "| FR cards on acq-gb % |" in text
    view = (out / "view.txt").read_text()  # the live view's last frame, as text
    assert "by phase of the story" in view and "challenger agreement" in view, view
    for png in ("approval_by_arm.png", "route_shares.png", "latency.png"):
        assert (out / png).stat().st_size > 10_000, png
