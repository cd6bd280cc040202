"""Network retry rules: crafted cases, and a property test over random decline sequences."""

from hypothesis import given, settings
from hypothesis import strategies as st

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.retry.rules import Attempt, CardHistory, Counters, NetworkRules, counters_at

RULES = NetworkRules("current")
RULES_2026 = NetworkRules("2026-04")
T0 = 1_700_000_000_000


def decline(network="VISA", code="05", mac=None, initiator="CIT", three_ds=False, t=T0):
    return {"network": network, "response_code": code, "advice_code": mac,
            "initiator": initiator, "three_ds": three_ds, "event_time": t}  # fmt: skip


def test_no_retry_after_visa_category_1():
    for code in ("04", "07", "14", "15", "41", "43", "57"):
        v = RULES.check(decline(code=code), Counters())
        assert not v.allowed and "CATEGORY_1" in v.reasons[0]


def test_visa_category_3_needs_new_details():
    v = RULES.check(decline(code="54"), Counters())
    assert not v.allowed and "NEW_DETAILS" in v.reasons[0]


def test_no_retry_after_mastercard_mac_03_or_21_or_01():
    for mac in ("03", "21", "01"):
        assert not RULES.check(decline("MASTERCARD", "05", mac), Counters()).allowed


def test_mac_24_to_30_set_the_earliest_retry():
    hours = {"24": 1, "25": 24, "26": 48, "27": 96, "28": 144, "29": 192, "30": 240, "02": 72}
    for mac, h in hours.items():
        v = RULES.check(decline("MASTERCARD", "51", mac), Counters())
        assert v.allowed and v.not_before_ms == T0 + h * HOUR_MS


def test_visa_reattempt_limit_stops_retries():
    assert RULES.check(decline(code="51"), Counters(reattempts_30d_cit=14)).allowed
    v = RULES.check(decline(code="51"), Counters(reattempts_30d_cit=10, reattempts_30d_mit=5))
    assert not v.allowed and "VISA_REATTEMPT_LIMIT" in v.reasons[0]


def test_april_2026_counts_cit_and_mit_apart_for_category_2():
    c = Counters(reattempts_30d_cit=19, reattempts_30d_mit=3)
    assert RULES_2026.check(decline(code="51", initiator="MIT"), c).allowed
    assert RULES_2026.check(decline(code="51", initiator="CIT"), c).allowed
    c = Counters(reattempts_30d_cit=20)
    assert not RULES_2026.check(decline(code="51", initiator="CIT"), c).allowed
    assert RULES_2026.check(decline(code="51", initiator="MIT"), c).allowed
    assert not RULES.check(decline(code="51", initiator="MIT"), c).allowed  # current: one pool


def test_mastercard_excessive_attempts():
    assert not RULES.check(decline("MASTERCARD", "05"), Counters(declines_24h=10)).allowed
    v = RULES.check(decline("MASTERCARD", "05"), Counters(declines_card_merchant_amount_30d=35))
    assert not v.allowed and "EXCESSIVE_30D" in v.reasons[0]
    assert RULES.check(decline("MASTERCARD", "05"), Counters(declines_24h=9)).allowed


def test_sca_soft_declines_get_a_3ds_step_up_not_a_blind_retry():
    for network, code in (("VISA", "1A"), ("MASTERCARD", "65")):
        v = RULES.check(decline(network, code), Counters())
        assert v.allowed and v.require_3ds
        assert not RULES.check(decline(network, code, three_ds=True), Counters()).allowed
    # 65 on Visa is a category 2 soft decline (withdrawal frequency), not SCA
    v = RULES.check(decline("VISA", "65"), Counters())
    assert v.allowed and not v.require_3ds


def test_counters_from_history():
    h = CardHistory()
    h.add(Attempt(T0 - 40 * DAY_MS, "m1", 100, "CIT", False, True))  # too old
    h.add(Attempt(T0 - 2 * DAY_MS, "m1", 100, "MIT", False, True))
    h.add(Attempt(T0 - HOUR_MS, "m1", 100, "CIT", False, False))
    h.add(Attempt(T0 - HOUR_MS, "m2", 100, "CIT", False, True))
    c = counters_at(h, "m1", 100, T0)
    assert c == Counters(declines_24h=2, reattempts_30d_cit=0, reattempts_30d_mit=1,
                         declines_card_merchant_amount_30d=2)  # fmt: skip


VISA_CODES = ["05", "51", "61", "91", "96", "04", "41", "54", "1A", "14", "65"]
MC_CODES = ["05", "51", "91", "04", "41", "65"]
MACS = [None, "01", "02", "03", "21", "24", "25", "26", "27", "28", "29", "30"]


@st.composite
def decline_sequences(draw):
    network = draw(st.sampled_from(["VISA", "MASTERCARD"]))
    codes = VISA_CODES if network == "VISA" else MC_CODES
    n = draw(st.integers(1, 60))
    return network, [
        (
            draw(st.sampled_from(codes)),
            draw(st.sampled_from(MACS)) if network == "MASTERCARD" else None,
            draw(st.integers(1, 72)),
            draw(st.sampled_from(["CIT", "MIT"])),
        )
        for _ in range(n)
    ]


@settings(max_examples=300, deadline=None)
@given(decline_sequences(), st.sampled_from(["current", "2026-04"]))
def test_a_retry_loop_that_obeys_verdicts_never_violates_a_rule(seq, variant):
    """Retry whenever the rules allow; an independent checker over the resulting history finds
    no retry after a never-retry decline, none before an advised delay, none past a limit."""
    network, declines = seq
    rules = NetworkRules(variant)
    h = CardHistory()
    t = T0
    last = None  # (verdict, decline) of the previous decline of the current payment
    log = []  # (time, code, mac, initiator, reattempt, three_ds)
    for code, mac, gap_h, initiator in declines:
        t += gap_h * HOUR_MS
        reattempt = False
        three_ds = False
        if last is not None:
            verdict, _ = last
            if verdict.allowed:
                t = max(t, verdict.not_before_ms)
                reattempt = True
                three_ds = verdict.require_3ds
        d = decline(network, code, mac, initiator, three_ds, t)
        h.add(Attempt(t, "m1", 500, initiator, False, reattempt))
        log.append((t, code, mac, initiator, reattempt, three_ds))
        c = counters_at(h, "m1", 500, t)
        v = rules.check(d, c)
        last = (v, d) if v.allowed else None  # a stopped payment ends; the next is new

    # independent checker over the log
    never_visa = {"04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3", "54",
                  "55", "82", "N7"}  # fmt: skip
    delays = {"02": 72, "24": 1, "25": 24, "26": 48, "27": 96, "28": 144, "29": 192, "30": 240}
    for i in range(1, len(log)):
        t_i, _, _, _ini, reatt, three_ds = log[i]
        if not reatt:
            continue
        pt, pcode, pmac, *_ = log[i - 1]
        if network == "VISA":
            assert pcode not in never_visa, log[: i + 1]
            if pcode == "1A":
                assert three_ds, "SCA decline retried without 3DS"
            window = [x for x in log[:i] if t_i - x[0] < 30 * DAY_MS and x[4]]
            if variant == "current":
                assert len(window) < 15 or pcode in {"1A"}, "Visa reattempt limit exceeded"
        else:
            assert pmac not in {"01", "03", "04", "21"}
            assert pcode not in {"04", "41", "07", "14", "15", "43", "57"}
            if pmac in delays:
                assert t_i >= pt + delays[pmac] * HOUR_MS, "retried before the MAC delay"
            if pcode == "65":
                assert three_ds
            d24 = [x for x in log[:i] if t_i - x[0] < DAY_MS]
            assert len(d24) < 10 + 1, "more than 10 declines in 24 h"
