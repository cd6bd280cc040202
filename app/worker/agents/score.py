"""Score agent: one RoutingDecision per AuthorizationRequest (+ challengers' shadow decisions).

Guarantee: at-least-once. Faust commits a request's offset only after the decision was handed to
the producer and the producer flushed, so a crash can repeat decisions but never lose one;
decisions are keyed and identified by request_id, and the exploration draw is a hash of it.
"""

from __future__ import annotations

import time
from typing import Any

from faust.types import AppT, Message
from prometheus_client import Counter

from app.contracts.validate import validate_request
from app.models.serving.scoring import CompiledModel
from app.monitoring.metrics import (
    DECISION_LATENCY,
    DECISIONS,
    EVENTS_IN,
    EVENTS_OUT,
    SHADOW_LATENCY,
)
from app.routing.dispatch import Dispatcher
from app.state.windows.count import Snapshot, unpack_snapshot
from app.worker.agents.alerts import AlertSink
from app.worker.agents.intake import Admission, guarded_agent, validated
from app.worker.context import WorkerContext


def register(app: AppT, ctx: WorkerContext) -> Any:
    s = ctx.settings
    serde_out = ctx.codec.decision
    sr_get = ctx.state.sr_snapshots.get
    events_out = EVENTS_OUT.labels(s.topic_decisions)
    shadow_out = EVENTS_OUT.labels(s.topic_shadow)
    observe = DECISION_LATENCY.observe
    observe_shadow = SHADOW_LATENCY.observe
    decisions_topic = ctx.topics.decisions
    shadow_topic = ctx.topics.shadow
    counters: dict[tuple[str, str], Counter] = {}
    mon = ctx.monitoring
    health = mon.health if mon is not None else None
    sink = AlertSink(ctx) if mon is not None else None

    def lookup(key: str) -> Snapshot | None:
        return unpack_snapshot(sr_get(key.encode()))

    dispatch = Dispatcher(s, ctx.models, ctx.features, lookup, health, ctx.oracle_p,
                          ctx.latency)  # fmt: skip
    slots = ctx.models
    served: list[CompiledModel | None] = [None]  # the champion the model detectors track

    async def score(msg: Message, req: dict[str, Any], started: float) -> None:
        decided = dispatch.decide(req)
        decision, shadows = decided.record, decided.shadows
        now = int(time.time() * 1000)
        decision["decided_at"] = now
        decision["decision_latency_us"] = int((time.perf_counter() - started) * 1e6)
        await decisions_topic.send(key=msg.key, value=serde_out.encode(decision))
        if mon is not None and sink is not None:
            champion = slots.champion
            if champion is not served[0]:
                served[0] = champion
                mon.health.set_model(champion.label if champion else "none")
            p = decided.model_p
            if p is not None:  # only model estimates feed calibration
                mon.estimates.put(req["request_id"], p)
            alerts = mon.health.observe_decision(
                req["event_time"], p,
                req["amount_minor"], req["merchant_country"] != req["issuer_country"],
                req["sca_required"])  # fmt: skip
            if alerts:
                await sink.send(alerts)
        if shadows:
            added = decided.shadow_seconds
            for sd in shadows:
                sd["decided_at"] = now
                sd["decision_latency_us"] = int(added * 1e6)
                await shadow_topic.send(key=msg.key, value=serde_out.encode(sd))
                shadow_out.inc()
            observe_shadow(added)
        events_out.inc()
        key = (decision["policy"], decision["chosen_route"])
        c = counters.get(key)
        if c is None:
            c = counters[key] = DECISIONS.labels(*key)
        c.inc()
        observe(time.perf_counter() - started)

    return guarded_agent(app, ctx.topics.requests, "score",
                         validated(ctx.codec.request, validate_request), score, ctx.dlq,
                         EVENTS_IN.labels(s.topic_requests), Admission(s))  # fmt: skip
