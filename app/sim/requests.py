"""AuthorizationRequest dicts drawn from a world, for closed-loop use (Kafka load generator).

The offline generator never builds dicts (it writes columns); a live load generator needs one
Avro-shaped request at a time and answers each decision with `truth.draw_outcome`. Drawing a
block of requests here and handing them out one by one keeps the per-request cost to a dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.contracts.vocab import CHANNELS, FUNDING, NETWORKS
from app.sim.traffic import sample_payments, to_batch
from app.sim.truth import fee_matrix
from app.sim.world import EXEMPTIONS, World


def sample_requests(
    world: World, t_ms: np.ndarray | list[int], rng: np.random.Generator, prefix: str = "live"
) -> list[dict[str, Any]]:
    """First-attempt AuthorizationRequest dicts arriving at t_ms (one per time).

    Ids are `{prefix}-p{n}` / `{prefix}-p{n}-1` with n counting from 0 within the call: pass a
    prefix unique per call (and per run) when the ids must not collide.
    """
    t = np.asarray(t_ms, np.int64)
    p = sample_payments(world, t, rng)
    b = to_batch(world, p)
    fees = fee_matrix(world, b).astype(np.int64)
    out = []
    for n in range(len(t)):
        m, card = int(p.merchant[n]), int(p.card[n])
        merchant = world.merchants[m]
        issuer = int(world.card_issuer[card])
        cands = world.merchant_cand[m, : world.merchant_ncand[m]]
        pid = f"{prefix}-p{n}"
        out.append({
            "request_id": f"{pid}-1",
            "payment_id": pid,
            "attempt": 1,
            "event_time": int(t[n]),
            "merchant_id": merchant.merchant_id,
            "mcc": merchant.mcc,
            "merchant_country": merchant.country,
            "amount_minor": int(p.amount[n]),
            "currency": merchant.currency,
            "card_fingerprint": world.card_fingerprint[card],
            "bin": f"{int(world.card_bin[card]):06d}",
            "network": NETWORKS[int(world.issuer_network[issuer])],
            "funding": FUNDING[int(world.card_funding[card])],
            "issuer_country": world.countries[int(world.issuer_country[issuer])],
            "channel": CHANNELS[int(p.channel[n])],
            "initiator": "MIT" if p.mit[n] else "CIT",
            "recurring": bool(p.recurring[n]),
            "sca_required": bool(p.sca_required[n]),
            "three_ds": bool(p.three_ds[n]),
            "sca_exemption": EXEMPTIONS[int(p.exemption[n])],
            "candidates": [
                {
                    "route_id": world.route_ids[r],
                    "fee_minor": int(fees[n, r]),
                    "acquirer_country": world.routes[r].acquirer_country,
                }
                for r in cands
            ],
            "previous_route": None,
            "previous_response_code": None,
        })  # fmt: skip
    return out
