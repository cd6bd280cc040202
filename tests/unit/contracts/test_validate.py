import pytest

from app.contracts.validate import ValidationError, validate_outcome, validate_request
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
