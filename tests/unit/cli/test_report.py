"""`authpilot report experiment|shadow` through the CLI: report.md, summary.json, plots."""

from __future__ import annotations

import json

import pytest

from app.cli.main import main as cli
from app.experiments.eventlog import write_event_log
from app.sim import load_world
from tests.unit.experiments.simlog import ARMS, simulate_log, write_log


@pytest.fixture(scope="module")
def world():
    return load_world("steady")


def test_cli_writes_reports_with_the_figures(world, tmp_path, capsys):
    log = simulate_log(world, 31, n=8_000, arms=ARMS, retry={"control": 0.3, "treatment": 0.3})
    src = write_log(tmp_path / "log", log, fmt="jsonl")
    out = tmp_path / "exp"
    assert cli(["report", "experiment", "--log", str(src), "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for arm, (payments, approved, _) in log.drawn.items():
        assert f"{approved / payments:.2%}" in md
        assert summary["arms"][arm]["payments"] == payments
    assert (out / "approval.png").stat().st_size > 5000
    assert (out / "sequential.png").stat().st_size > 5000
    out = tmp_path / "shadow"
    assert cli(["report", "shadow", "--log", str(src), "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    e = json.loads((out / "summary.json").read_text())["challengers"][0]["estimate"]
    assert f"{e['dr']:.2%}" in md and "ECE" in md
    assert (out / "calibration_challenger_2.png").stat().st_size > 5000
    assert (out / "off_policy_challenger_2.png").stat().st_size > 5000
    capsys.readouterr()


def test_cli_exits_2_with_the_message_on_invalid_input(world, tmp_path, capsys):
    log = simulate_log(world, 51, n=500)
    write_event_log(tmp_path / "a", log.decisions, log.outcomes)  # no shadow decisions
    assert (
        cli(["report", "shadow", "--log", str(tmp_path / "a"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "error: " in capsys.readouterr().err and not (tmp_path / "o").exists()
