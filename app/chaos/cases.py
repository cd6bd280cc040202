"""The malformation cases of the fuzz scenario: case name -> generator, expected reason from data.

What each case must be dead-lettered as lives in app/data/chaos/malformations.json (one table,
easy to adjust when the worker's reasons change); this module only builds the bytes. A
generator gets a fresh valid request and a declined outcome for it (unique ids, the card of a
valid message, so a case the worker wrongly accepts shows up in that card's state) and
returns what to send. `CASES` and the table must name the same cases (a unit test holds them).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from app.contracts.codec import Codec

Header = tuple[str, bytes | None]

DATA = Path(__file__).resolve().parents[1] / "data" / "chaos" / "malformations.json"
HUNDRED_YEARS_MS = 100 * 365 * 86_400_000
ONE_MB = 1_000_000  # a field this long makes a message just under the broker's 1 MiB default
LONG = 8 * 1024  # an over-long field whose message still fits any sane input limit


@dataclass(frozen=True)
class Spec:
    """One row of the table: where the case goes, the reason it must get, a copy cap."""

    name: str
    topic: str  # "requests" or "outcomes"
    expect: str
    max: int | None
    doc: str


@lru_cache(maxsize=1)
def specs() -> dict[str, Spec]:
    rows = json.loads(DATA.read_text())["cases"]
    return {n: Spec(n, r["topic"], r["expect"], r.get("max"), r["doc"]) for n, r in rows.items()}


@dataclass(frozen=True)
class Built:
    """What a generator returns: the message to produce."""

    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass
class Templates:
    """A valid request and a declined outcome for it, with the codec to encode variants."""

    codec: Codec
    request: dict[str, Any]
    outcome: dict[str, Any]

    def req(self, **changes: Any) -> bytes:
        return self.codec.request.encode({**self.request, **changes})

    def out(self, **changes: Any) -> bytes:
        return self.codec.outcome.encode({**self.outcome, **changes})

    @property
    def key(self) -> bytes:
        return str(self.request["card_fingerprint"]).encode()


Gen = Callable[[random.Random, Templates], Built]


def _random_bytes(rng: random.Random) -> bytes:
    n = rng.randrange(1, 300)
    return bytes([rng.randrange(1, 256)]) + rng.randbytes(n)


def _unreadable_body(rng: random.Random, schema: dict[str, Any]) -> bytes:
    """Random bytes that fastavro (the Avro spec, not the worker's code) cannot read whole."""
    import io

    while True:
        body = rng.randbytes(rng.randrange(1, 200))
        stream = io.BytesIO(body)
        try:
            fastavro.schemaless_reader(stream, schema, None)
        except Exception:
            return body
        if stream.tell() != len(body):
            return body  # trailing bytes: unreadable as one record


def _garbage_headers(rng: random.Random) -> tuple[Header, ...]:
    return (
        ("x-trace", b"1"),
        ("x-trace", b"2"),  # a duplicate key: both must survive
        ("x-null", None),  # a null value: must stay null, not b"None"
        ("x-binary", rng.randbytes(16)),
        ("authpilot.reason", b"forged"),  # forged: never trusted, kept as data
        ("authpilot.source", b"forged/0/0"),
        ("\u00e9t\u00e9", "caf\u00e9".encode()),
    )


def _cut(v: bytes, rng: random.Random) -> bytes:
    return v[: rng.randrange(5, len(v) - 1)]


def _reframe(v: bytes, schema_id: int) -> bytes:
    return v[:1] + struct.pack(">I", schema_id) + v[5:]


def _cases() -> dict[str, Gen]:
    arabic = "\u0664\u0661\u0661\u0661\u0661\u0661"  # 411111 in Arabic-Indic digits
    req_schema = lambda t: t.codec.request.schema  # noqa: E731
    two62 = 2**62

    def decision(t: Templates) -> dict[str, Any]:
        r = t.request
        return {"request_id": r["request_id"], "payment_id": r["payment_id"], "attempt": 1,
                "decided_at": r["event_time"], "chosen_route": "acq-eu", "scores": [],
                "propensity": 1.0, "policy": "success_rate", "arm": "control",
                "model_version": None, "reason_codes": [], "decision_latency_us": 1}  # fmt: skip

    def dead_letter(t: Templates) -> dict[str, Any]:
        return {"source_topic": "x", "source_partition": 0, "source_offset": 0, "key": None,
                "value": b"x", "headers": {}, "reason": "undecodable", "detail": "",
                "failed_at": 0, "worker": "fuzz"}  # fmt: skip

    def retry(t: Templates) -> dict[str, Any]:
        o = t.outcome
        return {"request_id": o["request_id"], "payment_id": o["payment_id"], "attempt": 1,
                "decided_at": o["event_time"], "action": "STOP", "not_before": 0,
                "route_id": None, "avoid_route": None, "three_ds": False, "p_recover": 0.0,
                "expected_value": 0.0, "reason_codes": []}  # fmt: skip

    def cands(n: int) -> list[dict[str, Any]]:
        return [{"route_id": f"r{i}", "fee_minor": 1, "acquirer_country": "DE"} for i in range(n)]

    def r(f: Callable[[random.Random, Templates], bytes | None]) -> Gen:
        return lambda rng, t: Built(t.key, f(rng, t))

    now = lambda t: t.request["event_time"]  # noqa: E731
    c: dict[str, Gen] = {
        "req.random_bytes": r(lambda rng, t: _random_bytes(rng)),
        "req.random_body": r(lambda rng, t: t.req()[:5] + _unreadable_body(rng, req_schema(t))),
        "req.truncated": r(lambda rng, t: _cut(t.req(), rng)),
        "req.header_only": r(lambda rng, t: t.req()[:5]),
        "req.short": r(lambda rng, t: b"\x00\x00"),
        "req.empty_value": r(lambda rng, t: b""),
        "req.trailing_bytes": r(lambda rng, t: t.req() + b"\x01\x02\x03"),
        "req.wrong_magic": r(lambda rng, t: bytes([rng.randrange(1, 256)]) + t.req()[1:]),
        "req.unknown_schema_id": r(lambda rng, t: _reframe(t.req(), 990 + rng.randrange(9))),
        "req.outcome_record": r(lambda rng, t: t.out()),
        "req.decision_record": r(lambda rng, t: t.codec.decision.encode(decision(t))),
        "req.dead_letter_record": r(lambda rng, t: t.codec.dead_letter.encode(dead_letter(t))),
        "req.amount_zero": r(lambda rng, t: t.req(amount_minor=0)),
        "req.amount_negative": r(lambda rng, t: t.req(amount_minor=-rng.randrange(1, 10**6))),
        "req.currency_unknown": r(lambda rng, t: t.req(currency="XYZ")),
        "req.candidates_empty": r(lambda rng, t: t.req(candidates=[])),
        "req.candidates_duplicate": r(
            lambda rng, t: t.req(candidates=t.request["candidates"] + t.request["candidates"][:1])
        ),
        "req.candidates_too_many": r(lambda rng, t: t.req(candidates=cands(65))),
        "req.fee_negative": r(
            lambda rng, t: t.req(
                candidates=[dict(x, fee_minor=-1) for x in t.request["candidates"]]
            )
        ),
        "req.attempt_zero": r(lambda rng, t: t.req(attempt=0)),
        "req.request_id_empty": r(lambda rng, t: t.req(request_id="")),
        "req.card_empty": r(lambda rng, t: t.req(card_fingerprint="")),
        "req.bin_short": r(lambda rng, t: t.req(bin="41111")),
        "req.bin_letters": r(lambda rng, t: t.req(bin="41A111")),
        "req.mcc_short": r(lambda rng, t: t.req(mcc="599")),
        "req.bin_arabic_indic": r(lambda rng, t: t.req(bin=arabic)),
        "req.bin_superscript": r(lambda rng, t: t.req(bin="\u00b2" * 6)),
        "req.mcc_fullwidth": r(lambda rng, t: t.req(mcc="\uff15\uff19\uff19\uff19")),
        "req.time_future_100y": r(lambda rng, t: t.req(event_time=now(t) + HUNDRED_YEARS_MS)),
        "req.time_2pow62": r(lambda rng, t: t.req(event_time=two62)),
        "req.time_negative": r(lambda rng, t: t.req(event_time=-1)),
        "req.time_very_negative": r(lambda rng, t: t.req(event_time=-two62)),
        "req.time_epoch_zero": r(lambda rng, t: t.req(event_time=0)),
        "req.long_merchant_id": r(lambda rng, t: t.req(merchant_id="m" * LONG)),
        "req.long_request_id": r(lambda rng, t: t.req(request_id="q" * LONG)),
        "req.field_1mb": r(lambda rng, t: t.req(merchant_id="M" * ONE_MB)),
        "req.null_value": r(lambda rng, t: None),
        "req.null_key": lambda rng, t: Built(None, t.req()),
        "req.garbage_headers": lambda rng, t: Built(
            t.key, _random_bytes(rng), _garbage_headers(rng)
        ),
        "req.forged_reason_header": lambda rng, t: Built(
            t.key, t.req(amount_minor=-1), (("authpilot.reason", b"undecodable"),)
        ),
        "out.random_bytes": r(lambda rng, t: _random_bytes(rng)),
        "out.truncated": r(lambda rng, t: _cut(t.out(), rng)),
        "out.header_only": r(lambda rng, t: t.out()[:5]),
        "out.wrong_magic": r(lambda rng, t: bytes([rng.randrange(1, 256)]) + t.out()[1:]),
        "out.unknown_schema_id": r(lambda rng, t: _reframe(t.out(), 990 + rng.randrange(9))),
        "out.request_record": r(lambda rng, t: t.req()),
        "out.retry_record": r(lambda rng, t: t.codec.retry.encode(retry(t))),
        "out.latency_negative": r(lambda rng, t: t.out(latency_ms=-5)),
        "out.approved_contradicts_side": r(
            lambda rng, t: t.out(approved=True, failure_side="ISSUER")
        ),
        "out.route_empty": r(lambda rng, t: t.out(route_id="")),
        "out.amount_negative": r(lambda rng, t: t.out(amount_minor=-100)),
        "out.bin_arabic_indic": r(lambda rng, t: t.out(bin=arabic)),
        "out.time_future_100y": r(
            lambda rng, t: t.out(event_time=t.outcome["event_time"] + HUNDRED_YEARS_MS)
        ),
        "out.time_2pow62": r(lambda rng, t: t.out(event_time=two62)),
        "out.time_negative": r(lambda rng, t: t.out(event_time=-1)),
        "out.long_merchant_id": r(lambda rng, t: t.out(merchant_id="m" * LONG)),
        "out.field_1mb": r(lambda rng, t: t.out(merchant_id="M" * ONE_MB)),
        "out.null_value": r(lambda rng, t: None),
        "out.null_key": lambda rng, t: Built(None, t.out()),
        "out.garbage_headers": lambda rng, t: Built(
            t.key, _random_bytes(rng), _garbage_headers(rng)
        ),
    }
    return c


CASES: dict[str, Gen] = _cases()


def plan(total: int, rng: random.Random) -> list[str]:
    """`total` case names covering every case at least once (when total allows), each case
    at most its `max`, the rest spread evenly, in random order."""
    sp = specs()
    names = sorted(sp)
    out: list[str] = []
    counts = dict.fromkeys(names, 0)
    while len(out) < total:
        open_ = [n for n in names if sp[n].max is None or counts[n] < (sp[n].max or 0)]
        if not open_:
            break
        for n in open_:
            if len(out) >= total:
                break
            out.append(n)
            counts[n] += 1
    rng.shuffle(out)
    return out


def valid_headers(rng: random.Random) -> tuple[Header, ...]:
    """Garbage headers on a valid message: it must still be decided (headers are not input)."""
    return _garbage_headers(rng)
