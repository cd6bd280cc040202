"""`authpilot backfill`: the summary of a dry run, the load seam's exit, no Kafka on the way."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.cli.backfill import parse_time_ms
from app.cli.main import main
from app.harness.sample import write_sample_log


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_log(tmp_path_factory.mktemp("log"), n=1500)


def test_a_dry_run_prints_the_summary_and_loads_nothing(log, capsys):
    assert main(["backfill", "--log", str(log), "--dry-run"]) == 0
    cap = capsys.readouterr()
    out = cap.out
    n = pq.ParquetFile(log / "outcomes.parquet").metadata.num_rows
    assert f"outcomes      {n:>12,}" in out
    for store in ("card-features", "feature-state", "route-stats"):
        assert store in out
    assert "outcomes/s" in out and "dry run: nothing loaded" in out
    assert "card_merchant_amount" in cap.err  # progress, per entity


def test_as_of_and_sr_window_reach_the_computation(log, capsys):
    assert main(["backfill", "--log", str(log), "--dry-run", "--quiet", "--as-of",
                 "2026-01-02T00:00:00Z", "--sr-window", "10"]) == 0  # fmt: skip
    cap = capsys.readouterr()
    assert "as of         2026-01-02T00:00:00.000+00:00" in cap.out
    assert "sr_window 10" in cap.out
    assert cap.err == ""


def test_without_a_broker_the_load_is_refused_with_a_clear_error(log, capsys, monkeypatch):
    monkeypatch.setenv("AUTHPILOT_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens there
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["backfill", "--log", str(log), "--quiet", "--connect-timeout", "2"]) == 1
    finally:
        get_settings.cache_clear()
    assert "not loaded: no broker at 127.0.0.1:1" in capsys.readouterr().err


def test_a_log_the_contract_refuses_exits_3_and_computes_nothing(tmp_path, capsys):
    assert main(["backfill", "--log", str(tmp_path), "--dry-run"]) == 3
    cap = capsys.readouterr()
    assert "refused, nothing computed" in cap.err and "outcomes" in cap.err
    assert "card-features" not in cap.out


def test_a_missing_log_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["backfill", "--log", str(tmp_path / "nope"), "--dry-run"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_parse_time_ms():
    assert parse_time_ms("1767225600000") == 1_767_225_600_000
    assert parse_time_ms("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert parse_time_ms("2026-01-01T01:00:00+01:00") == 1_767_225_600_000
    assert parse_time_ms("2026-01-01") == 1_767_225_600_000  # naive: UTC
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time_ms("yesterday")


def test_backfill_touches_no_kafka(log):
    """Computing the state has no side effects: a dry run in a fresh interpreter never imports
    a Kafka client or Faust, so it cannot send anything (app.kafka.connection, the settings
    mapping every CLI command imports, holds no client)."""
    code = (
        "import sys; from app.cli.main import main; "
        f"rc = main(['backfill', '--log', {str(log)!r}, '--dry-run', '--quiet']); "
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('confluent_kafka', 'aiokafka', 'faust', 'kafka', 'mode')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "0 []"
