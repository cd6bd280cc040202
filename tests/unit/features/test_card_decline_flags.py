"""last_decline_today / last_decline_this_cycle: whether the card's last issuer decline fell on
the request's UTC day / since its issuer country's last payday (bundled calendar: 1st and
15th), 0 when the card was never declined; the fast path and the reference agree."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from app.features.definitions import FEATURE_NAMES, N_FEATURES, OWNERS
from app.features.online import FeatureState
from app.features.reference import ReferenceFeatureState

TODAY = FEATURE_NAMES.index("last_decline_today")
CYCLE = FEATURE_NAMES.index("last_decline_this_cycle")


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def _outcome(t: int, approved: bool = False) -> dict:
    return {"event_time": t, "card_fingerprint": "c1", "merchant_id": "m1", "bin": "411111",
            "network": "VISA", "issuer_country": "FR", "amount_minor": 1000, "attempt": 1,
            "initiator": "CIT", "route_id": "r1", "approved": approved,
            "failure_side": "NONE" if approved else "ISSUER",
            "response_code": "00" if approved else "51"}  # fmt: skip


def _request(t: int) -> dict:
    return {"event_time": t, "card_fingerprint": "c1", "merchant_id": "m1", "bin": "411111",
            "network": "VISA", "issuer_country": "FR", "amount_minor": 1000, "attempt": 1,
            "initiator": "CIT", "candidates": [{"route_id": "r1", "fee_minor": 10}],
            "channel": "ECOM", "recurring": False, "sca_required": False, "three_ds": False,
            "funding": "DEBIT"}  # fmt: skip


@pytest.mark.parametrize(("declined", "asked", "today", "cycle"), [
    (ms(2026, 1, 20, 9), ms(2026, 1, 20, 18), 1.0, 1.0),  # same day, after the 15th
    (ms(2026, 1, 20, 23, 30), ms(2026, 1, 21, 0, 30), 0.0, 1.0),  # past UTC midnight
    (ms(2026, 1, 14, 12), ms(2026, 1, 16, 12), 0.0, 0.0),  # the 15th's payday in between
    (ms(2026, 1, 31, 22), ms(2026, 2, 1, 1), 0.0, 0.0),  # 1 February: a new cycle and day
])  # fmt: skip
def test_the_flags_follow_the_utc_day_and_the_pay_cycle(declined, asked, today, cycle):
    for state in (FeatureState({o: {} for o in OWNERS}),
                  ReferenceFeatureState({o: {} for o in OWNERS})):  # fmt: skip
        for owner in OWNERS:
            state.update_outcome(_outcome(declined), owner)
        row = state.fill(_request(asked), np.empty((1, N_FEATURES)))[0]
        assert (row[TODAY], row[CYCLE]) == (today, cycle), type(state).__name__


def test_never_declined_is_zero_and_an_approval_is_no_decline():
    state = FeatureState({o: {} for o in OWNERS})
    row = state.fill(_request(ms(2026, 1, 20, 12)), np.empty((1, N_FEATURES)))[0]
    assert (row[TODAY], row[CYCLE]) == (0.0, 0.0)
    for owner in OWNERS:
        state.update_outcome(_outcome(ms(2026, 1, 20, 9), approved=True), owner)
    row = state.fill(_request(ms(2026, 1, 20, 12)), np.empty((1, N_FEATURES)))[0]
    assert (row[TODAY], row[CYCLE]) == (0.0, 0.0)
    assert np.isnan(row[FEATURE_NAMES.index("secs_since_last_decline")])
