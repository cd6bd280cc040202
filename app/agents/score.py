"""Score agent: one RoutingDecision per AuthorizationRequest.

Guarantee: at-least-once. Faust commits a request's offset only after the decision was handed to
the producer and the producer flushed, so a crash can repeat decisions but never lose one;
decisions are keyed and identified by request_id, and the exploration draw is a hash of it, so a
repeated decision is identical and downstream can drop it by id.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.agents.context import WorkerContext
from app.agents.intake import decode_or_dead_letter, processing_failed
from app.features.online import new_buffer
from app.metrics import DECISION_LATENCY, DECISIONS, EVENTS_IN, EVENTS_OUT
from app.policy import expected_value, success_rate
from app.routestats import Snapshot, unpack_snapshot
from app.validate import validate_request


def register(app: Any, ctx: WorkerContext) -> Any:
    s = ctx.settings
    serde_in = ctx.codec.request
    serde_out = ctx.codec.decision
    sr_get = ctx.route_sr.get
    params = ctx.sr_params
    events_in = EVENTS_IN.labels(s.topic_requests)
    events_out = EVENTS_OUT.labels(s.topic_decisions)
    observe = DECISION_LATENCY.observe
    decisions_topic = ctx.decisions
    dlq = ctx.dlq
    counters: dict[str, Any] = {}
    slots = ctx.models
    features = ctx.features
    ev_params = ctx.ev_params
    # Preallocated once: feature rows and probabilities for up to 64 candidate routes.
    xbuf = new_buffer(64)
    pbuf = np.empty(64)

    def lookup(key: str) -> Snapshot | None:
        return unpack_snapshot(sr_get(key.encode()))

    @app.agent(ctx.requests, name="score")
    async def score(stream: Any) -> None:
        # Per event, not take_events(): measured on this machine, Faust's batching timers
        # added latency (p50 produce->decided 11.6 ms vs 6.4 ms at 200 req/s) and lowered
        # throughput; the decode/score/encode work per event is too small to amortize them.
        async for event in stream.events():
            t0 = time.perf_counter()
            msg = event.message
            events_in.inc()
            req = await decode_or_dead_letter(msg, serde_in, validate_request, dlq)
            if req is None:
                continue
            try:
                champion = slots.champion
                if champion is not None:
                    rows = features.fill(req, xbuf)
                    p = champion.score_many(xbuf, pbuf, len(rows))  # same buffers: cached ptrs
                    decision = expected_value.decide(req, p, champion.label, ev_params)
                else:
                    decision = success_rate.decide(req, lookup, params)
                    decision["reason_codes"].append("NO_MODEL")
                decision["arm"] = "default"
                decision["decided_at"] = int(time.time() * 1000)
                decision["decision_latency_us"] = int((time.perf_counter() - t0) * 1e6)
                await decisions_topic.send(key=msg.key, value=serde_out.encode(decision))
            except Exception as exc:  # never let one event stop the agent
                await processing_failed(msg, exc, dlq)
                continue
            events_out.inc()
            route = decision["chosen_route"]
            c = counters.get(route)
            if c is None:
                c = counters[route] = DECISIONS.labels(decision["policy"], route)
            c.inc()
            observe(time.perf_counter() - t0)

    return score
