"""Retry engine: rules first, cascades, 3DS step-up, value-weighed delays with paydays."""

import pytest

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.retry.engine import RetryParams, crosses_payday, decide_retry, p_recover
from app.retry.rules import Counters, NetworkRules

RULES = NetworkRules()
P = RetryParams()
T = 1_767_225_600_000 + 5 * DAY_MS  # 2026-01-06 00:00 UTC


def out(code="51", network="VISA", mac=None, initiator="MIT", side="ISSUER", attempt=1,
        amount=5000, three_ds=False):  # fmt: skip
    return {"request_id": "r", "payment_id": "p", "attempt": attempt, "event_time": T,
            "network": network, "response_code": code, "advice_code": mac,
            "initiator": initiator, "failure_side": side, "route_id": "acq-1",
            "amount_minor": amount, "three_ds": three_ds, "approved": False}  # fmt: skip


def test_hard_declines_stop():
    for o in (out("41"), out("05", "MASTERCARD", "03"), out("05", "MASTERCARD", "21")):
        d = decide_retry(o, Counters(), RULES, P, T)
        assert d["action"] == "STOP"


def test_route_failure_cascades_now_avoiding_the_route():
    d = decide_retry(out("96", side="ROUTE", initiator="CIT"), Counters(), RULES, P, T)
    assert d["action"] == "RETRY" and d["not_before"] == T and d["avoid_route"] == "acq-1"


def test_sca_gets_3ds_step_up():
    d = decide_retry(out("1A", initiator="CIT"), Counters(), RULES, P, T)
    assert d["action"] == "RETRY" and d["three_ds"]


def test_cit_soft_declines_are_not_retried_later():
    d = decide_retry(out("51", initiator="CIT"), Counters(), RULES, P, T)
    assert d["action"] == "STOP" and "CIT_NO_DELAYED_RETRY" in d["reason_codes"]


def test_mit_insufficient_funds_waits_for_payday_and_respects_mac_delay():
    # Jan 6: the next payday (the 15th) is 9 days away; waiting for the money beats a retry
    # within the week, so the retry lands on the 15th once funds have settled (06:00)
    d = decide_retry(out("51"), Counters(), RULES, P, T)
    assert d["action"] == "RETRY" and "PAYDAY" in d["reason_codes"]
    assert d["not_before"] == T + 9 * DAY_MS + 6 * HOUR_MS
    jan12 = dict(out("51"), event_time=T + 6 * DAY_MS)  # the 15th is 3 days away
    d = decide_retry(jan12, Counters(), RULES, P, T)
    assert "PAYDAY" in d["reason_codes"] and d["not_before"] >= T + 9 * DAY_MS + 6 * HOUR_MS
    # a generic decline on a non-payday class waits a day, and its estimate halves with each
    # declined retry of the same payment
    assert p_recover("05", T, T + DAY_MS, attempt=3) == p_recover("05", T, T + DAY_MS) * 0.25
    assert "PAYDAY" not in decide_retry(out("05"), Counters(), RULES, P, T)["reason_codes"]
    d = decide_retry(out("51", "MASTERCARD", "30"), Counters(), RULES, P, T)
    assert d["not_before"] >= T + 240 * HOUR_MS


def test_limits_and_max_attempts_stop():
    assert decide_retry(out("51"), Counters(reattempts_30d_mit=15), RULES, P, T)["action"] == "STOP"
    assert decide_retry(out("51", attempt=4), Counters(), RULES, P, T)["action"] == "STOP"


def test_small_amounts_are_not_worth_a_retry():
    d = decide_retry(out("05", amount=100), Counters(), RULES, P, T)
    assert d["action"] == "STOP" and any(r.startswith("NOT_WORTH_IT") for r in d["reason_codes"])


def test_payday_priors():
    jan14 = 1_767_225_600_000 + 13 * DAY_MS
    assert crosses_payday(jan14, jan14 + DAY_MS)
    assert not crosses_payday(jan14 + DAY_MS, jan14 + 2 * DAY_MS)
    assert p_recover("51", jan14, jan14 + DAY_MS) > p_recover("51", T, T + DAY_MS)


def test_pay_calendar_by_issuer_country(tmp_path):
    """A German card waits for the German payday (the 28th), a US card for the 15th; the
    calendar comes from a file and a bad one is refused with its path."""
    import json

    import pytest

    from app.retry.engine import RECOVERY, load_recovery

    cal = RECOVERY.parent / "pay_calendars" / "europe_monthly.json"
    table = load_recovery(None, cal)
    params = RetryParams(recovery=table)
    de = dict(out("51"), issuer_country="DE")
    us = dict(out("51"), issuer_country="US")
    d_de = decide_retry(de, Counters(), RULES, params, T)
    d_us = decide_retry(us, Counters(), RULES, params, T)
    assert "PAYDAY" in d_de["reason_codes"] and "PAYDAY" in d_us["reason_codes"]
    assert d_us["not_before"] == T + 9 * DAY_MS + 6 * HOUR_MS  # the 15th, as without a calendar
    assert d_de["not_before"] == T + 22 * DAY_MS + 6 * HOUR_MS  # the 28th
    assert crosses_payday(T, T + 10 * DAY_MS, table, "US")
    assert not crosses_payday(T, T + 10 * DAY_MS, table, "DE")
    # without a calendar every country is paid on the 1st and 15th
    assert decide_retry(de, Counters(), RULES, P, T)["not_before"] == d_us["not_before"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"DE": [31]}))
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_recovery(None, bad)


def test_a_networks_decline_fee_is_priced_into_the_retry(tmp_path):
    """Mastercard charges recurring insufficient-funds declines carrying MAC 24-30 (rules data:
    decline_fees): the engine charges (1 - p) x that fee on top of the attempt cost."""
    import json

    from app.retry.rules import RULES_DIR

    for name in ("visa", "mastercard"):  # the same rules with no fee schedule
        data = json.loads((RULES_DIR / f"{name}.json").read_text())
        (tmp_path / f"{name}.json").write_text(json.dumps(dict(data, decline_fees=[])))
    no_fees = NetworkRules(rules_dir=tmp_path)
    fee_case = out("51", "MASTERCARD", "24")
    fee = RULES.decline_fee(fee_case)
    assert fee > 0 and no_fees.decline_fee(fee_case) == 0
    assert RULES.decline_fee(out("51", "MASTERCARD", "24", initiator="CIT")) == 0
    assert RULES.decline_fee(out("51", "MASTERCARD")) == 0 == RULES.decline_fee(out("51"))
    with_fee = decide_retry(fee_case, Counters(), RULES, P, T)
    free = decide_retry(fee_case, Counters(), no_fees, P, T)
    assert with_fee["not_before"] == free["not_before"]  # same best time, same p
    p = with_fee["p_recover"]
    assert with_fee["expected_value"] == pytest.approx(free["expected_value"] - (1 - p) * fee)


def test_the_declined_routes_fee_is_the_attempt_cost_and_the_setting_the_fallback():
    """A retry costs the fee of the route the decline went through when the worker knows it
    (its decision's estimate); the configured attempt cost only when it does not; the
    operator's surcharge comes on top of either."""
    o = out("51", amount=20_000)
    unknown = decide_retry(o, Counters(), RULES, P, T)
    known = decide_retry(o, Counters(), RULES, P, T, attempt_fee=64.0)
    assert known["not_before"] == unknown["not_before"]
    assert known["p_recover"] == unknown["p_recover"]
    saved = P.attempt_cost_minor - 64.0
    assert known["expected_value"] == pytest.approx(unknown["expected_value"] + saved)
    charged = decide_retry(o, Counters(), RULES, RetryParams(attempt_surcharge_minor=30.0), T,
                           attempt_fee=64.0)  # fmt: skip
    assert charged["expected_value"] == pytest.approx(known["expected_value"] - 30.0)
    cascade = decide_retry(out("96", side="ROUTE", amount=20_000), Counters(), RULES, P, T,
                           attempt_fee=64.0)  # fmt: skip
    base = decide_retry(out("96", side="ROUTE", amount=20_000), Counters(), RULES, P, T)
    assert cascade["expected_value"] == pytest.approx(base["expected_value"] + saved)


def test_an_expensive_route_makes_a_marginal_retry_not_worth_it():
    """The same decline: worth one more attempt at a cheap route's fee, not at a dear one's."""
    o = out("05", amount=1_500)
    cheap = decide_retry(o, Counters(), RULES, P, T, attempt_fee=5.0)
    dear = decide_retry(o, Counters(), RULES, P, T, attempt_fee=80.0)
    assert cheap["action"] == "RETRY", cheap
    assert dear["action"] == "STOP"
    assert any(r.startswith("NOT_WORTH_IT") for r in dear["reason_codes"])
