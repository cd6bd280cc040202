"""Building contract records from one another (one place for the field mapping)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def outcome_for(request: Mapping[str, Any], route_id: str, *, event_time: int, approved: bool,
                response_code: str, advice_code: str | None, latency_ms: int,
                failure_side: str) -> dict[str, Any]:  # fmt: skip
    """The AuthorizationOutcome of `request` sent on `route_id`: request fields carried over,
    the response filled in."""
    return {
        "request_id": request["request_id"],
        "payment_id": request["payment_id"],
        "attempt": request["attempt"],
        "event_time": event_time,
        "request_time": request["event_time"],
        "card_fingerprint": request["card_fingerprint"],
        "bin": request["bin"],
        "network": request["network"],
        "issuer_country": request["issuer_country"],
        "merchant_id": request["merchant_id"],
        "amount_minor": request["amount_minor"],
        "currency": request["currency"],
        "initiator": request.get("initiator", "CIT"),
        "route_id": route_id,
        "approved": approved,
        "response_code": response_code,
        "advice_code": advice_code,
        "latency_ms": latency_ms,
        "failure_side": failure_side,
        "three_ds": bool(request.get("three_ds", False)),
    }


def next_attempt(request: Mapping[str, Any], retry: Mapping[str, Any], last_route: str,
                 last_code: str) -> dict[str, Any] | None:  # fmt: skip
    """The next AuthorizationRequest of a payment as a RetryDecision says (RETRY only): when,
    with 3-D Secure or not, and without the route to avoid; None when nothing is left to try."""
    cands = [c for c in request["candidates"] if c["route_id"] != retry["avoid_route"]]
    if retry["action"] != "RETRY" or not cands:
        return None
    return dict(request, request_id=f"{request['payment_id']}-{request['attempt'] + 1}",
                attempt=request["attempt"] + 1, candidates=cands,
                three_ds=bool(request["three_ds"] or retry["three_ds"]),
                event_time=max(retry["not_before"], request["event_time"] + 1),
                previous_route=last_route, previous_response_code=last_code)  # fmt: skip
