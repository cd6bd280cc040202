"""Event-log directories: Parquet and JSONL agree, duplicates are dropped, bad input is named."""

from __future__ import annotations

import pyarrow as pa
import pytest

from app.experiments.eventlog import ReportError, read_event_log, write_event_log
from app.experiments.experiment import experiment_report
from app.experiments.shadow import shadow_report
from tests.unit.experiments.simlog import ARMS, simulate_log, write_log


def test_parquet_and_jsonl_logs_give_the_same_report(world, tmp_path):
    log = simulate_log(world, 41, n=3_000, arms=ARMS, retry={"control": 0.5, "treatment": 0.5})
    a = experiment_report(read_event_log(write_log(tmp_path / "pq", log)))
    b = experiment_report(read_event_log(write_log(tmp_path / "js", log, fmt="jsonl")))
    assert a.arms == b.arms
    sa = shadow_report(read_event_log(tmp_path / "pq", need_shadow=True)).challengers[0]
    sb = shadow_report(read_event_log(tmp_path / "js", need_shadow=True)).challengers[0]
    assert sa.estimate == sb.estimate


def test_duplicates_and_missing_outcomes_are_counted_not_double_counted(world, tmp_path):
    log = simulate_log(world, 42, n=2_000)
    dec = pa.concat_tables([log.decisions, log.decisions.slice(0, 100)])  # redelivered
    write_event_log(tmp_path, dec, log.outcomes.slice(0, 1_900))
    r = experiment_report(read_event_log(tmp_path))
    assert r.dropped["decisions"] == 100 and r.pending == 100
    assert r.arms["default"].attempts == 1_900


def test_clear_errors_for_missing_and_invalid_inputs(world, tmp_path, capsys):
    with pytest.raises(ReportError, match="no such event-log directory"):
        read_event_log(tmp_path / "nope")
    log = simulate_log(world, 51, n=500)
    write_event_log(tmp_path / "a", log.decisions, log.outcomes)
    with pytest.raises(ReportError, match="no shadow"):
        read_event_log(tmp_path / "a", need_shadow=True)
    (tmp_path / "b").mkdir()
    write_event_log(tmp_path / "b", log.decisions, log.outcomes, fmt="jsonl")
    (tmp_path / "b" / "outcomes.jsonl").unlink()
    with pytest.raises(ReportError, match="no outcomes"):
        read_event_log(tmp_path / "b")
    write_event_log(tmp_path / "c", log.decisions.drop(["propensity"]), log.outcomes)
    with pytest.raises(ReportError, match=r"lack the columns \['propensity'\]"):
        read_event_log(tmp_path / "c")
    write_event_log(tmp_path / "d", log.decisions, log.outcomes, fmt="jsonl")
    with (tmp_path / "d" / "outcomes.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ReportError, match=r"outcomes.jsonl:501: not JSON"):
        read_event_log(tmp_path / "d")
