"""Domain validation of decoded records: what Avro's types cannot say.

A record that decodes but makes no sense (negative amount, no candidate route, unknown
currency) must not reach the policy: it is dead-lettered with the field and the reason.

Every string has a bound from the schema's meaning (ids, route ids, codes, countries), so a
valid request or outcome, and every decision, RetryDecision or dead letter built from one, stays
far under the producer's 1 MB limit (tests/unit/contracts/test_validate.py measures the largest
valid request). Digits are ASCII 0-9 only: `str.isdigit()` also accepts Arabic-Indic and
fullwidth digits, which no BIN table or MCC list holds. Countries are the ingest check's ISO
3166-1 alpha-2 form (app.contracts.ingest RULES["country"]).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

# The scorer's buffers are preallocated for this many routes per request.
MAX_CANDIDATES = 64
# Ids (request, payment, merchant, card fingerprint): a UUID is 36 characters, a SHA-256
# fingerprint 64 hex; 128 leaves room for prefixes and a retry's "-<attempt>" suffix.
MAX_ID_CHARS = 128
# Route ids name an acquirer/processor connection in the operator's configuration (e.g.
# acq-eu); they are repeated per candidate in every decision, so they are kept short.
MAX_ROUTE_CHARS = 64
# ISO 8583 response codes are 2 characters, Amex's 3, Mastercard advice codes 2: 8 is ample.
MAX_CODE_CHARS = 8
# sca_exemption is a free string (not an enum, see app.contracts.vocab): the longest listed
# spelling, TRUSTED_BENEFICIARY, is 19 characters.
MAX_EXEMPTION_CHARS = 32


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


def _shown(s: str) -> str:
    """A value as a dead letter's detail shows it: at most 40 characters and the length."""
    return repr(s) if len(s) <= 40 else f"{s[:40]!r}... ({len(s)} characters)"


def ascii_digits(s: str, lo: int, hi: int) -> bool:
    """lo to hi characters, each an ASCII 0-9 (not any Unicode digit, as str.isdigit())."""
    return lo <= len(s) <= hi and s.isascii() and s.isdigit()


def is_country(s: str) -> bool:
    """ISO 3166-1 alpha-2: two ASCII upper-case letters."""
    return len(s) == 2 and s.isascii() and s.isalpha() and s.isupper()


def _string(rec: dict[str, Any], field: str, limit: int, *, nullable: bool = False) -> None:
    v = rec[field]
    if v is None and nullable:
        return
    _require(bool(v) or nullable, field, "empty")  # an optional field may be "" (not checked)
    _require(len(v) <= limit, field, f"{_shown(v)} is longer than {limit} characters")


def _country(field: str, v: str | None, *, nullable: bool = False) -> None:
    if v is None and nullable:
        return
    _require(v is not None and is_country(v), field,
             f"{_shown(v or '')} is not an ISO 3166-1 alpha-2 code")  # fmt: skip


def _common(rec: dict[str, Any]) -> None:
    _string(rec, "request_id", MAX_ID_CHARS)
    _string(rec, "payment_id", MAX_ID_CHARS)
    _require(rec["attempt"] >= 1, "attempt", f"{rec['attempt']} < 1")
    _require(rec["amount_minor"] > 0, "amount_minor", f"{rec['amount_minor']} is not positive")
    _require(rec["currency"] in currencies(), "currency",
             f"unknown currency {_shown(rec['currency'])}")  # fmt: skip
    _string(rec, "card_fingerprint", MAX_ID_CHARS)
    _string(rec, "merchant_id", MAX_ID_CHARS)
    _country("issuer_country", rec["issuer_country"])
    b = rec["bin"]
    _require(ascii_digits(b, 6, 8), "bin", f"{_shown(b)} is not 6-8 ASCII digits")


def validate_request(rec: dict[str, Any]) -> None:
    """Raise ValidationError for the first invalid field of an AuthorizationRequest."""
    _common(rec)
    mcc = rec["mcc"]
    _require(ascii_digits(mcc, 4, 4), "mcc", f"{_shown(mcc)} is not 4 ASCII digits")
    _country("merchant_country", rec["merchant_country"])
    _string(rec, "sca_exemption", MAX_EXEMPTION_CHARS, nullable=True)
    _string(rec, "previous_route", MAX_ROUTE_CHARS, nullable=True)
    _string(rec, "previous_response_code", MAX_CODE_CHARS, nullable=True)
    cands = rec["candidates"]
    _require(len(cands) > 0, "candidates", "empty candidate list")
    _require(len(cands) <= MAX_CANDIDATES, "candidates", f"more than {MAX_CANDIDATES} routes")
    seen: set[str] = set()
    for c in cands:
        rid = c["route_id"]
        _require(bool(rid), "candidates.route_id", "empty route id")
        _require(len(rid) <= MAX_ROUTE_CHARS, "candidates.route_id",
                 f"{_shown(rid)} is longer than {MAX_ROUTE_CHARS} characters")  # fmt: skip
        _require(rid not in seen, "candidates.route_id", f"route {rid!r} listed twice")
        _require(c["fee_minor"] >= 0, "candidates.fee_minor", f"negative fee on {rid!r}")
        _country("candidates.acquirer_country", c.get("acquirer_country"), nullable=True)
        seen.add(rid)


def validate_outcome(rec: dict[str, Any]) -> None:
    """Raise ValidationError for the first invalid field of an AuthorizationOutcome."""
    _common(rec)
    _string(rec, "route_id", MAX_ROUTE_CHARS)
    _string(rec, "response_code", MAX_CODE_CHARS)
    _string(rec, "advice_code", MAX_CODE_CHARS, nullable=True)
    _require(rec["latency_ms"] >= 0, "latency_ms", "negative")
    approved_side = rec["failure_side"] == "NONE"
    _require(
        rec["approved"] == approved_side,
        "failure_side",
        f"approved={rec['approved']} contradicts failure_side={rec['failure_side']}",
    )
