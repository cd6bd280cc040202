"""`authpilot report retries` (app.experiments.retries): RetryDecisions joined with the outcome
of the attempt they scheduled and the decline they answered, on hand-built records whose every
figure is known."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.cli.main import main as cli
from app.experiments.eventlog import ReportError
from app.experiments.retries import joined, read_retry_log, retry_report


def _decision(rid: str, pay: str, attempt: int, p: float | None, reasons: list[str],
              action: str = "RETRY", three_ds: bool = False,
              version: str | None = "retry/r1") -> dict:  # fmt: skip
    return {"request_id": rid, "payment_id": pay, "attempt": attempt, "action": action,
            "p_recover": p, "reason_codes": reasons, "model_version": version,
            "three_ds": three_ds, "propensity": 1.0}  # fmt: skip


def _outcome(pay: str, attempt: int, approved: bool, code: str) -> dict:
    return {"request_id": f"{pay}-{attempt}", "payment_id": pay, "attempt": attempt,
            "approved": approved, "response_code": code, "amount_minor": 1000}  # fmt: skip


DECISIONS = [
    _decision("A-1", "A", 1, 0.8, ["DELAY_24H:p=0.80", "RECOVERY:MODEL"]),
    _decision("B-1", "B", 1, 0.6, ["DELAY_72H:p=0.60", "PAYDAY", "RECOVERY:MODEL"]),
    _decision("B-2", "B", 2, 0.5, ["DELAY_24H:p=0.50", "RECOVERY:TABLE", "EXPLORE"], version=None),
    _decision("C-1", "C", 1, 0.9, ["CASCADE:acq-de"], version=None),
    _decision("D-1", "D", 1, None, ["NOT_WORTH_IT:ev=-3.0", "RECOVERY:MODEL"], action="STOP"),
    _decision("E-1", "E", 1, None, [], three_ds=True, version=None),  # a step-up: no p
    _decision("A-1", "A", 1, 0.8, ["DELAY_24H:p=0.80", "RECOVERY:MODEL"]),  # redelivered
]
OUTCOMES = [
    _outcome("A", 1, False, "05"),
    _outcome("A", 2, True, "00"),
    _outcome("B", 1, False, "51"),
    _outcome("B", 2, False, "05"),  # B's third: not yet
    _outcome("C", 1, False, "91"),
    _outcome("C", 2, True, "00"),
    _outcome("D", 1, False, "05"),
    _outcome("E", 1, False, "1A"),
    _outcome("A", 2, True, "00"),  # redelivered
]


def _report():
    return retry_report(pd.DataFrame(DECISIONS), pd.DataFrame(OUTCOMES), "hand-built")


def test_every_retry_is_joined_with_its_decline_and_the_attempt_it_scheduled() -> None:
    r = joined(pd.DataFrame(DECISIONS), pd.DataFrame(OUTCOMES)).set_index("request_id")
    assert sorted(r.index) == ["A-1", "B-1", "B-2", "C-1"]  # RETRY with a p, deduplicated
    assert r.loc["A-1", "class"] == "do_not_honor" and bool(r.loc["A-1", "ok"])
    assert r.loc["B-1", "class"] == "insufficient_funds" and not r.loc["B-1", "ok"]
    assert r.loc["B-2", "class"] == "do_not_honor" and not r.loc["B-2", "answered"]
    assert r.loc["B-2", "retry"] == "2" and r.loc["B-2", "choice"] == "explored"
    assert r.loc["C-1", "kind"] == "cascade" and r.loc["A-1", "kind"] == "scheduled"
    assert r.loc["A-1", "source"] == "model retry/r1" and r.loc["B-2", "source"] == "table"


def test_rates_leave_pending_retries_out() -> None:
    r = _report()
    assert (r.retries, r.pending) == (4, 1)
    o = r.overall
    assert (o.sent, o.answered) == (4, 3)
    assert o.p_mean == pytest.approx((0.8 + 0.6 + 0.9) / 3)
    assert o.approved == pytest.approx(2 / 3) and o.lo < 2 / 3 < o.hi
    assert o.gap_points == pytest.approx(100 * ((0.8 + 0.6 + 0.9) / 3 - 2 / 3))
    kinds = {c.group: c for c in r.by_kind}
    assert (kinds[("cascade",)].sent, kinds[("scheduled",)].sent) == (1, 3)
    cells = {c.group: c for c in r.by_class}
    dnh = cells[("do_not_honor", "model retry/r1", "1")]
    assert (dnh.sent, dnh.answered, dnh.p_mean, dnh.approved) == (1, 1, 0.8, 1.0)
    assert cells[("insufficient_funds", "model retry/r1", "1")].approved == 0.0
    explored = {c.group: c for c in r.by_choice}[("explored",)]
    assert (explored.sent, explored.answered) == (1, 0)
    bins = {c.group[0]: c for c in r.reliability}
    assert sum(c.sent for c in bins.values()) == 3  # scheduled only
    assert bins["0.7-0.8"].approved == 1.0


def test_no_retry_with_a_p_is_an_error() -> None:
    with pytest.raises(ReportError, match="no RETRY decisions"):
        retry_report(pd.DataFrame(DECISIONS[4:6]), pd.DataFrame(OUTCOMES), "x")


def test_cli_reads_an_export_directory(tmp_path) -> None:
    log = tmp_path / "log"
    for kind, rows in (("retry_decisions", DECISIONS), ("outcomes", OUTCOMES)):
        (log / kind).mkdir(parents=True)
        half = len(rows) // 2
        for n, part in enumerate((rows[:half], rows[half:]), 1):
            pq.write_table(pa.Table.from_pylist(part), log / kind / f"part-{n:05d}.parquet")
    d, o = read_retry_log(log)
    assert (len(d), len(o)) == (len(DECISIONS), len(OUTCOMES))
    out = tmp_path / "report"
    assert cli(["report", "retries", "--log", str(log), "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    assert "| do_not_honor | model retry/r1 | 1 | 1 | 1 | 0.800 |" in md
    assert "## Scheduled retries: the engine's best time vs explored ones" in md
    assert (out / "reliability.png").stat().st_size > 5_000
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["retries"], summary["pending"]) == (4, 1)


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert cli(["report", "retries", "--log", str(tmp_path / "absent"), "--quiet"]) == 2
    assert "no such event-log directory" in capsys.readouterr().err
    (tmp_path / "log" / "outcomes").mkdir(parents=True)
    assert cli(["report", "retries", "--log", str(tmp_path / "log"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no retry_decisions" in err and "export --from-topics" in err


def test_cli_needs_one_source(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["report", "retries"])
    assert exc.value.code == 2 and "--log" in capsys.readouterr().err
