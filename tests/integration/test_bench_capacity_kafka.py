"""`python -m app.bench.capacity --quick` on the session broker: every row gets a figure."""

from __future__ import annotations

import json
import math

import pytest

from app.bench import capacity

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_quick_capacity_run_fills_every_row(kafka_bootstrap, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHPILOT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    out = tmp_path / "capacity"
    assert capacity.main(["--quick", "--out", str(out)]) == 0
    result = json.loads((out / "summary.json").read_text())
    keys = [row["key"] for row in result["capacity"]]
    assert keys == ["python", "faust", "faust-before", "sr", "ev", "closed"]
    for row in result["capacity"]:
        assert row["events"] == 3000 and row["rate"] > 0 and math.isfinite(row["rate"]), row
        assert math.isfinite(row["ratio_to_bare_faust"]), row
    assert [row["fraction"] for row in result["latency"]] == [0.25, 0.5, 0.75]
    for row in result["latency"]:
        for side in ("worker", "echo"):
            pt = row[side]
            assert pt["decided"] == pt["sent"] > 0, row
            assert math.isfinite(pt["p50_ms"]) and math.isfinite(pt["p99_ms"]), row
    report = (out / "report.md").read_text()
    assert report.count("\n| ") >= 1 + 6 + 1 + 3  # both headers, six processors, three loads
