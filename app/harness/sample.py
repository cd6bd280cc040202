"""A small fixed world for smoke traffic: three routes whose approval differs by issuer.

It exists so the worker can be exercised before (and independently of) the full simulator in
app.sim: integration tests and `authpilot demo --world sample` use it. Approval
probabilities are a fixed route x issuer-country table, so a working success-rate router must
learn to prefer the right route per issuer.
"""

from __future__ import annotations

import itertools
import random
import uuid
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.contracts.records import outcome_for
from app.contracts.vocab import HOUR_MS, INITIATORS, MINUTE_MS

ROUTES = ({"route_id": "acq-eu", "fee_minor": 12, "acquirer_country": "DE"},
          {"route_id": "acq-us", "fee_minor": 10, "acquirer_country": "US"},
          {"route_id": "proc-global", "fee_minor": 15, "acquirer_country": "GB"})  # fmt: skip
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC

# issuer: (bin, network, country, {route: p_approve})
ISSUERS = (
    ("411111", "VISA", "DE", {"acq-eu": 0.93, "acq-us": 0.78, "proc-global": 0.86}),
    ("545454", "MASTERCARD", "US", {"acq-eu": 0.74, "acq-us": 0.92, "proc-global": 0.85}),
    ("400012", "VISA", "GB", {"acq-eu": 0.82, "acq-us": 0.80, "proc-global": 0.90}),
)


class SampleTraffic:
    """Seeded request stream and outcome draws for the three-route world."""

    def __init__(self, seed: int = 7, cards: int = 5000) -> None:
        self._rng = random.Random(seed)
        self._ids = itertools.count()
        self._cards = cards
        # Ids must be unique across runs (the decision stream outlives a run); routing and
        # outcomes stay seeded.
        self._prefix = f"s{seed}-{uuid.uuid4().hex[:12]}"

    def next_request(self, now_ms: int) -> dict[str, Any]:
        r = self._rng
        n = next(self._ids)
        bin_, network, country, _ = ISSUERS[r.randrange(len(ISSUERS))]
        return {
            "request_id": f"{self._prefix}-{n}",
            "payment_id": f"{self._prefix}-p{n}",
            "attempt": 1,
            "event_time": now_ms,
            "merchant_id": f"m{r.randrange(20)}",
            "mcc": "5999",
            "merchant_country": "DE",
            "amount_minor": r.randrange(500, 20000),
            "currency": "EUR",
            "card_fingerprint": f"card-{r.randrange(self._cards)}",
            "bin": bin_,
            "network": network,
            "funding": "CREDIT",
            "issuer_country": country,
            "channel": "ECOM",
            "initiator": "CIT",
            "recurring": False,
            "sca_required": False,
            "three_ds": True,
            "sca_exemption": None,
            "candidates": [dict(c) for c in ROUTES],
            "previous_route": None,
            "previous_response_code": None,
        }

    def p_approve(self, request: dict[str, Any], route_id: str) -> float:
        """True approval probability: issuer x route, lowered for cards short of funds (a
        fixed 15% of cards, by fingerprint) and for large amounts: signal that a model can
        learn from card history and amount and a success-rate router cannot."""
        p = next(i[3] for i in ISSUERS if i[0] == request["bin"])[route_id]
        if zlib.crc32(request["card_fingerprint"].encode()) % 100 < 15:
            p *= 0.55
        if request["amount_minor"] > 10000:
            p *= 0.9
        return p

    def outcome(self, request: dict[str, Any], route_id: str, now_ms: int) -> dict[str, Any]:
        approved = self._rng.random() < self.p_approve(request, route_id)
        code = "00" if approved else self._rng.choice(("05", "51", "51", "96"))
        side = "NONE" if approved else ("ROUTE" if code == "96" else "ISSUER")
        return outcome_for(request, route_id, event_time=now_ms, approved=approved,
                           response_code=code, advice_code=None,
                           latency_ms=self._rng.randrange(80, 400), failure_side=side)  # fmt: skip


def write_sample_log(tmp: Path, n: int = 6000, seed: int = 3, same_ms: bool = False) -> Path:
    """A small event log from the sample world: ~12 days, few cards, retries after declines."""
    rng = random.Random(seed)
    world = SampleTraffic(seed, cards=300)
    requests, outcomes = [], []
    t = T0
    for _ in range(n):
        t += rng.randrange(1, 3 * MINUTE_MS)
        r = world.next_request(t)
        r["merchant_id"] = f"m{rng.randrange(4)}"
        r["amount_minor"] = rng.choice([999, 1999, 4999])
        r["initiator"] = rng.choice(INITIATORS)
        for attempt in (1, 2):
            r = dict(r, attempt=attempt, event_time=t, request_id=f"{r['payment_id']}-{attempt}")
            route = rng.choice(r["candidates"])["route_id"]
            lat = 0 if same_ms else rng.randrange(50, 3000)
            o = world.outcome(r, route, t + lat)
            requests.append(r)
            outcomes.append(o)
            if o["approved"] or rng.random() < 0.5:
                break
            t += rng.randrange(1, 2 * HOUR_MS)
    tmp.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(requests), tmp / "requests.parquet")
    pq.write_table(pa.Table.from_pylist(outcomes), tmp / "outcomes.parquet")
    return tmp
