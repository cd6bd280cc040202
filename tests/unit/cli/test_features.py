"""`authpilot features build|check` and `train` on good and bad logs: refusals exit 3 with the
report and write nothing; a good log gets its matrix and a data-quality summary beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from app.cli.main import main as cli
from app.contracts.ingest import EXIT_REFUSED
from app.features.quality import quality_paths
from app.harness.sample import write_sample_log


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_log(tmp_path_factory.mktemp("good"), n=500, seed=13)


@pytest.fixture
def bad(good: Path, tmp_path: Path) -> Path:
    """The good log with its networks spelled in lower case."""
    log = tmp_path / "bad"
    shutil.copytree(good, log)
    t = pq.read_table(log / "requests.parquet")
    i = t.schema.get_field_index("network")
    pq.write_table(
        t.set_column(i, "network", pc.utf8_lower(t["network"])), log / "requests.parquet"
    )
    return log


def test_build_refuses_a_bad_log_with_the_report_and_writes_no_matrix(bad, tmp_path, capsys):
    out = tmp_path / "m" / "matrix.parquet"
    assert cli(["features", "build", "--log", str(bad), "--out", str(out)]) == EXIT_REFUSED == 3
    err = capsys.readouterr().err
    n = pq.read_metadata(bad / "requests.parquet").num_rows
    visa = sum(v == "visa" for v in pq.read_table(bad / "requests.parquet")["network"].to_pylist())
    assert "refused, no matrix written" in err
    assert (
        f"requests.network [enum]: not one of VISA, MASTERCARD, AMEX, DISCOVER, OTHER: {n:,}" in err
    )
    assert f"'visa' x{visa:,}" in err and "upper(network)" in err
    assert not out.exists()
    assert not any(p.exists() for p in quality_paths(out))


def test_build_writes_the_matrix_and_its_quality_summary(good, tmp_path, capsys):
    out = tmp_path / "matrix.parquet"
    assert cli(["features", "build", "--log", str(good), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    js, md = quality_paths(out)
    assert (js.name, md.name) == ("matrix.quality.json", "matrix.quality.md")
    assert "meets the event-log contract" in stdout and f"data-quality summary: {md}" in stdout
    s = json.loads(js.read_text())
    outcomes = pq.read_table(good / "outcomes.parquet").to_pandas()
    assert s["rows"]["outcomes"] == len(outcomes) == s["features"]["rows"]
    assert s["approval_rate"] == pytest.approx(outcomes.approved.mean())
    # label rate per segment, as computed from the log itself
    for seg, col in (("network", "network"), ("route_id", "route_id"), ("initiator", "initiator")):
        want = outcomes.groupby(col).approved.mean()
        got = {g["value"]: g["approval_rate"] for g in s["segments"][seg]}
        assert got == pytest.approx(want.to_dict(), abs=1e-6), seg
    # null rates and ranges per column, and per feature of the matrix
    assert s["columns"]["outcomes"]["advice_code"]["null_rate"] == 1.0
    assert s["columns"]["requests"]["amount_minor"]["min"] == 999
    assert s["features"]["features"]["network_code"]["null_rate"] == 0.0
    # the sample world is all ECOM and never recurring: those features are constant
    assert {"card_not_present", "recurring"} <= set(s["features"]["constant"])
    text = md.read_text()
    assert "## Approval per segment" in text and "| VISA |" in text and "`recurring`" in text


def test_check_alone_and_its_json(good, bad, tmp_path, capsys):
    assert cli(["features", "check", "--log", str(good)]) == 0
    assert "meets the event-log contract" in capsys.readouterr().out
    js = tmp_path / "report.json"
    assert cli(["features", "check", "--log", str(bad), "--json", str(js)]) == EXIT_REFUSED
    assert "requests.network [enum]" in capsys.readouterr().err
    report = json.loads(js.read_text())
    assert report["ok"] is False
    assert [(p["table"], p["column"], p["check"]) for p in report["problems"]] == [
        ("requests", "network", "enum"),
        ("outcomes", "network", "mismatch"),
    ]


def test_a_log_path_that_is_not_a_directory_is_a_usage_error(tmp_path, capsys):
    for cmd in (["features", "build", "--out", str(tmp_path / "m.parquet")], ["features", "check"]):
        assert cli([*cmd, "--log", str(tmp_path / "nowhere")]) == 2
        assert "is not a directory" in capsys.readouterr().err


def test_train_refuses_a_bad_log_and_a_matrix_no_valid_log_gives(good, bad, tmp_path, capsys):
    matrix = tmp_path / "matrix.parquet"
    assert cli(["features", "build", "--log", str(good), "--out", str(matrix)]) == 0
    capsys.readouterr()
    out = tmp_path / "model"
    args = ["train", "--matrix", str(matrix), "--out", str(out)]
    assert cli([*args, "--log", str(bad)]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "refused, the log breaks the ingest contract" in err and "'visa' x" in err
    # a matrix as the old build made from the bad log: NaN network codes
    t = pq.read_table(matrix)
    i = t.schema.get_field_index("network_code")
    nan = pc.if_else(pc.equal(t["approved"], 1), None, t["network_code"])
    pq.write_table(t.set_column(i, "network_code", nan), matrix)
    approved = pc.sum(t["approved"]).as_py()
    assert cli([*args, "--log", str(good)]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "is not a matrix of a valid log" in err
    assert (
        f"matrix.network_code [null]: null (a valid log gives every row a value): {approved:,}"
        in err
    )
    assert not out.exists()


def test_fit_retry_refuses_a_bad_log(bad, tmp_path, capsys):
    out = tmp_path / "recovery.json"
    assert cli(["fit-retry", "--log", str(bad), "--out", str(out)]) == EXIT_REFUSED
    assert "requests.network [enum]" in capsys.readouterr().err
    assert not out.exists()
