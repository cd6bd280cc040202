import pytest

from app.contracts.validate import (
    MAX_CANDIDATES,
    MAX_CODE_CHARS,
    MAX_EXEMPTION_CHARS,
    MAX_ID_CHARS,
    MAX_ROUTE_CHARS,
    ValidationError,
    validate_outcome,
    validate_request,
)
from app.harness.sample import SampleTraffic

W = SampleTraffic(2)
REQ = W.next_request(1)


def test_a_sample_request_and_outcome_are_valid():
    validate_request(REQ)
    validate_outcome(W.outcome(REQ, "acq-eu", 2))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_minor": -1}, "amount_minor"),
        ({"amount_minor": 0}, "amount_minor"),
        ({"currency": "EURO"}, "currency"),
        ({"candidates": []}, "candidates"),
        ({"bin": "41x111"}, "bin"),
        ({"mcc": "59"}, "mcc"),
        ({"attempt": 0}, "attempt"),
        ({"request_id": ""}, "request_id"),
        ({"candidates": [REQ["candidates"][0], REQ["candidates"][0]]}, "candidates.route_id"),
        ({"candidates": [dict(REQ["candidates"][0], fee_minor=-5)]}, "candidates.fee_minor"),
    ],
)
def test_invalid_requests_name_the_field(change, field):
    with pytest.raises(ValidationError) as err:
        validate_request(dict(REQ, **change))
    assert err.value.field == field


def test_outcome_side_must_agree_with_approval():
    out = W.outcome(REQ, "acq-eu", 2)
    with pytest.raises(ValidationError):
        validate_outcome(dict(out, approved=True, failure_side="ROUTE"))


ARABIC_INDIC = "\u0664\u0661\u0661\u0661\u0661\u0661"  # "411111" in Arabic-Indic digits
FULLWIDTH = "\uff15\uff19\uff19\uff19"  # "5999" in fullwidth digits


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bin": ARABIC_INDIC}, "bin"),
        ({"mcc": FULLWIDTH}, "mcc"),
        ({"mcc": "٥٩٩٩"}, "mcc"),
        ({"request_id": "r" * (MAX_ID_CHARS + 1)}, "request_id"),
        ({"payment_id": "p" * 1_000_000}, "payment_id"),
        ({"merchant_id": "m" * (MAX_ID_CHARS + 1)}, "merchant_id"),
        ({"merchant_id": ""}, "merchant_id"),
        ({"card_fingerprint": "c" * (MAX_ID_CHARS + 1)}, "card_fingerprint"),
        ({"merchant_country": "DEU"}, "merchant_country"),
        ({"issuer_country": "de"}, "issuer_country"),
        ({"issuer_country": "ＤＥ"}, "issuer_country"),  # fullwidth letters
        ({"sca_exemption": "X" * (MAX_EXEMPTION_CHARS + 1)}, "sca_exemption"),
        ({"previous_route": "r" * (MAX_ROUTE_CHARS + 1)}, "previous_route"),
        ({"previous_response_code": "0" * (MAX_CODE_CHARS + 1)}, "previous_response_code"),
        ({"candidates": [dict(REQ["candidates"][0], route_id="r" * (MAX_ROUTE_CHARS + 1))]},
         "candidates.route_id"),
        ({"candidates": [dict(REQ["candidates"][0], acquirer_country="Germany")]},
         "candidates.acquirer_country"),
    ],
)  # fmt: skip
def test_bounds_and_ascii_digits_name_the_field(change, field):
    with pytest.raises(ValidationError) as err:
        validate_request(dict(REQ, **change))
    assert err.value.field == field
    assert len(err.value.detail) < 200, "a huge value is shown cut in the detail"


def test_values_at_their_bounds_are_valid():
    validate_request(dict(REQ, request_id="r" * MAX_ID_CHARS, bin="41111111", mcc="0742",
                          sca_exemption="TRUSTED_BENEFICIARY", previous_route=None))  # fmt: skip
    out = W.outcome(REQ, "acq-eu", 2)
    validate_outcome(dict(out, route_id="r" * MAX_ROUTE_CHARS, response_code="N7",
                          advice_code=None))  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"route_id": "r" * (MAX_ROUTE_CHARS + 1)}, "route_id"),
        ({"response_code": "0" * 1_000_000}, "response_code"),
        ({"advice_code": "0" * (MAX_CODE_CHARS + 1)}, "advice_code"),
        ({"bin": "４１１１１１"}, "bin"),
        ({"issuer_country": "D"}, "issuer_country"),
    ],
)
def test_outcome_bounds(change, field):
    with pytest.raises(ValidationError) as err:
        validate_outcome(dict(W.outcome(REQ, "acq-eu", 2), **change))
    assert err.value.field == field


def largest_valid_request() -> dict:
    """Every string at its bound in 4-byte UTF-8 characters, the most candidates."""
    wide = "\U0001f4b3"  # a 4-byte character
    return dict(
        REQ,
        request_id=wide * MAX_ID_CHARS, payment_id=wide * MAX_ID_CHARS,
        merchant_id=wide * MAX_ID_CHARS, card_fingerprint=wide * MAX_ID_CHARS,
        sca_exemption=wide * MAX_EXEMPTION_CHARS, previous_route=wide * MAX_ROUTE_CHARS,
        previous_response_code=wide * MAX_CODE_CHARS,
        candidates=[{"route_id": f"{i:02d}" + wide * (MAX_ROUTE_CHARS - 2), "fee_minor": 2**62,
                     "acquirer_country": "DE"} for i in range(MAX_CANDIDATES)],
    )  # fmt: skip


def test_the_largest_valid_request_and_its_outputs_fit_the_byte_bound():
    """Measured: the largest valid request encodes to 19.5 KB, under AUTHPILOT_MAX_INPUT_BYTES
    (64 KiB), and its decision with every route scored and eliminated under 1 MB."""
    from app.config import Settings
    from app.contracts.codec import Codec

    req = largest_valid_request()
    validate_request(req)
    codec = Codec(Settings())
    raw = codec.request.encode(req)
    assert len(raw) < 30_000 < Settings().max_input_bytes
    decision = {
        "request_id": req["request_id"], "payment_id": req["payment_id"], "attempt": 1,
        "decided_at": 0, "chosen_route": req["candidates"][0]["route_id"],
        "scores": [{"route_id": c["route_id"], "p_approve": 0.5, "score": 1.0, "fee_minor": 1,
                    "samples": 1, "eliminated": True} for c in req["candidates"]],
        "propensity": 1.0, "policy": "expected_value", "arm": "a" * MAX_ID_CHARS,
        "model_version": "m" * 200,
        "reason_codes": [f"ELIMINATED:{c['route_id']}" for c in req["candidates"]] * 2,
        "decision_latency_us": 1,
    }  # fmt: skip
    assert len(codec.decision.encode(decision)) < 100_000
