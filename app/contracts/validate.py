"""Domain validation of decoded records: what Avro's types cannot say.

A record that decodes but makes no sense (negative amount, no candidate route, unknown
currency) must not reach the policy: it is dead-lettered with the field and the reason.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

# The scorer's buffers are preallocated for this many routes per request.
MAX_CANDIDATES = 64


class ValidationError(ValueError):
    """One invalid field; the worker dead-letters the message with reason invalid_field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@lru_cache(maxsize=1)
def currencies() -> frozenset[str]:
    """ISO 4217 codes authpilot accepts, from app/data/currencies.json."""
    text = (Path(__file__).resolve().parents[1] / "data" / "currencies.json").read_text()
    return frozenset(json.loads(text)["minor_units"])


def _require(cond: bool, field: str, detail: str) -> None:
    if not cond:
        raise ValidationError(field, detail)


def _common(rec: dict[str, Any]) -> None:
    _require(bool(rec["request_id"]), "request_id", "empty")
    _require(bool(rec["payment_id"]), "payment_id", "empty")
    _require(rec["attempt"] >= 1, "attempt", f"{rec['attempt']} < 1")
    _require(rec["amount_minor"] > 0, "amount_minor", f"{rec['amount_minor']} is not positive")
    _require(rec["currency"] in currencies(), "currency", f"unknown currency {rec['currency']!r}")
    _require(bool(rec["card_fingerprint"]), "card_fingerprint", "empty")
    b = rec["bin"]
    _require(b.isdigit() and 6 <= len(b) <= 8, "bin", f"{b!r} is not 6-8 digits")


def validate_request(rec: dict[str, Any]) -> None:
    """Raise ValidationError for the first invalid field of an AuthorizationRequest."""
    _common(rec)
    mcc = rec["mcc"]
    _require(len(mcc) == 4 and mcc.isdigit(), "mcc", f"{mcc!r} is not 4 digits")
    cands = rec["candidates"]
    _require(len(cands) > 0, "candidates", "empty candidate list")
    _require(len(cands) <= MAX_CANDIDATES, "candidates", f"more than {MAX_CANDIDATES} routes")
    seen: set[str] = set()
    for c in cands:
        rid = c["route_id"]
        _require(bool(rid), "candidates.route_id", "empty route id")
        _require(rid not in seen, "candidates.route_id", f"route {rid!r} listed twice")
        _require(c["fee_minor"] >= 0, "candidates.fee_minor", f"negative fee on {rid!r}")
        seen.add(rid)


def validate_outcome(rec: dict[str, Any]) -> None:
    """Raise ValidationError for the first invalid field of an AuthorizationOutcome."""
    _common(rec)
    _require(bool(rec["route_id"]), "route_id", "empty")
    _require(bool(rec["response_code"]), "response_code", "empty")
    _require(rec["latency_ms"] >= 0, "latency_ms", "negative")
    approved_side = rec["failure_side"] == "NONE"
    _require(
        rec["approved"] == approved_side,
        "failure_side",
        f"approved={rec['approved']} contradicts failure_side={rec['failure_side']}",
    )
