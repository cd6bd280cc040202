"""The retry recovery table fitted from a simulated retry history."""

from __future__ import annotations

import json

import pytest

from app.cli.main import main as cli
from app.retry.engine import RetryParams, _recovery, decide_retry, load_recovery
from app.retry.recovery_fit import fit_from_log
from app.retry.rules import Counters, NetworkRules
from app.sim import simulate


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    d = tmp_path_factory.mktemp("retries")
    simulate("steady", 120_000, 4, d, oracle=False)
    return d


def test_fit_learns_what_the_history_shows_and_keeps_priors_elsewhere(log):
    prior = _recovery()
    t = fit_from_log(log)
    nsf, dnh = t["classes"]["insufficient_funds"], t["classes"]["do_not_honor"]
    # the history retries 51 about a day later: rarely approved unless a payday came between
    assert sum(nsf["n"]) > 200
    assert nsf["p"][1] < 0.15 and nsf["payday_boost"] > 0.3
    # ... and 05 half an hour later: the same-day issuer answer mostly repeats
    assert dnh["n"][0] > 200 and 0.1 < dnh["p"][0] < 0.45
    # cells the history never tried keep their priors exactly
    for name, c in t["classes"].items():
        for i, n in enumerate(c["n"]):
            if n == 0:
                assert c["p"][i] == prior["classes"][name]["p"][i]


def test_cli_writes_a_table_the_engine_loads(log, tmp_path, capsys):
    out = tmp_path / "recovery.json"
    assert cli(["fit-retry", "--log", str(log), "--out", str(out)]) == 0
    table = load_recovery(out)
    assert json.loads(out.read_text())["classes"] == table["classes"]
    o = {"request_id": "r", "payment_id": "p", "attempt": 1, "event_time": 1_767_657_600_000,
         "network": "VISA", "response_code": "51", "advice_code": None, "initiator": "MIT",
         "failure_side": "ISSUER", "route_id": "acq-de", "amount_minor": 5000,
         "three_ds": False, "approved": False}  # fmt: skip
    d = decide_retry(o, Counters(), NetworkRules(), RetryParams(recovery=table), o["event_time"])
    assert d["action"] == "RETRY" and "PAYDAY" in d["reason_codes"]
    with pytest.raises(ValueError, match="not a recovery table"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        load_recovery(bad)
    assert cli(["fit-retry", "--log", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_delay_exploration_in_the_history_informs_every_delay(tmp_path):
    """With the history's retries at random delays the fit sees a 05 retried a day later,
    and learns it recovers far more often than one retried within the hour."""
    simulate("steady", 120_000, 4, tmp_path, config={"retries": {"explore": 0.5}}, oracle=False)
    dnh = fit_from_log(tmp_path)["classes"]["do_not_honor"]
    assert dnh["n"][0] > 100 and dnh["n"][2] > 100
    assert dnh["p"][2] > dnh["p"][0] + 0.15, dnh["p"]
