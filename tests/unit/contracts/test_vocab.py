"""The Python vocabulary equals the wire contract and the bundled rules data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.contracts import vocab
from app.features.definitions import HARD_CODES, feature_hash
from app.retry.rules import RULES_DIR

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def _enums() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum":
                symbols = found.setdefault(node["name"], node["symbols"])
                assert symbols == node["symbols"], f"enum {node['name']} differs between schemas"
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for f in sorted(SCHEMAS.glob("*.avsc")):
        walk(json.loads(f.read_text()))
    return found


@pytest.mark.parametrize(
    ("name", "enum"),
    [
        ("NETWORKS", "CardNetwork"),
        ("FUNDING", "Funding"),
        ("CHANNELS", "Channel"),
        ("INITIATORS", "Initiator"),
        ("FAILURE_SIDES", "FailureSide"),
        ("RETRY_ACTIONS", "RetryAction"),
        ("ALERT_KINDS", "AlertKind"),
    ],
)
def test_tuples_equal_the_schema_enums_in_order(name: str, enum: str) -> None:
    assert list(getattr(vocab, name)) == _enums()[enum]


def test_card_not_present_is_every_channel_but_the_terminal() -> None:
    assert {"ECOM", "MOTO", "IN_APP"} == vocab.CNP_CHANNELS


def test_time_units() -> None:
    assert (vocab.MINUTE_MS, vocab.HOUR_MS, vocab.DAY_MS) == (60_000, 3_600_000, 86_400_000)


def test_hard_codes_equal_the_bundled_rules_and_the_feature_hash_is_unchanged() -> None:
    visa = json.loads((RULES_DIR / "visa.json").read_text())
    mastercard = json.loads((RULES_DIR / "mastercard.json").read_text())
    from_rules = set(visa["categories"]["1"]) | set(visa["categories"]["3"])
    from_rules |= set(mastercard["hard_codes"])
    assert from_rules == HARD_CODES
    # A changed hash makes every compiled model be refused: moving vocabulary must not do it.
    # Changed on purpose twice: the pay-cycle features (days_since_payday, days_to_payday; was
    # 0668dad7aba77361), then last_decline_today / last_decline_this_cycle (was
    # 2e3aa40fb2b41eb4); models trained before are refused and must be retrained.
    assert feature_hash() == "7dedff3d739d87e6"


def test_the_simulator_emits_only_schema_failure_sides() -> None:
    from app.sim.truth import FAILURE_SIDE, KINDS

    assert len(FAILURE_SIDE) == len(KINDS)
    assert set(FAILURE_SIDE) == set(vocab.FAILURE_SIDES)
