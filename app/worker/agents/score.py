"""Score agent: one RoutingDecision per AuthorizationRequest (+ challengers' shadow decisions).

Guarantee: at-least-once reading, at most one distinct decision per request_id. Faust commits a
request's offset only after its decision was handed to the producer and the producer flushed,
so a crash never loses a decision; the requests after the last commit are read again, and
app.state.decided turns each of those into nothing (a replay: its decision was already sent)
or the first decision's bytes (the gateway sent the request twice). Decisions go to the
request's partition number with its offset in a header, which is how a worker taking over a
partition learns what was sent for it. Requests older than AUTHPILOT_REQUEST_MAX_AGE_MS get no
decision (counted): nobody waits for them any more.
"""

from __future__ import annotations

import time
from typing import Any

from faust.types import AppT, Message
from prometheus_client import Counter

from app.contracts.codec import Codec
from app.contracts.validate import validate_request
from app.kafka.connection import worker_client_config
from app.models.serving.scoring import CompiledModel
from app.monitoring.metrics import (
    DECISION_LATENCY,
    DECISIONS,
    EVENTS_IN,
    EVENTS_OUT,
    REPLAYED,
    RESENT_DECISIONS,
    SHADOW_LATENCY,
    STALE_REQUESTS,
)
from app.routing.dispatch import Dispatcher
from app.state.decided import OFFSET_HEADER, ReadBack, forget_moved
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
                          ctx.latency, ctx.state.sr_snapshots.get)  # fmt: skip
    estimates = ctx.estimates
    slots = ctx.models
    served: list[CompiledModel | None] = [None]  # the champion the model detectors track
    decided = ctx.state.decided
    replayed = REPLAYED.labels(s.topic_requests)
    max_age_s = s.request_max_age_ms / 1000.0
    reader = Codec(s).decision  # its own serde: read_back decodes on an executor thread
    sent = ReadBack(decided, worker_client_config(s), s.topic_decisions,
                    lambda value: str(reader.decode(value)["request_id"]))  # fmt: skip

    forget_moved(app, decided, s.topic_requests)

    async def score(msg: Message, req: dict[str, Any], started: float) -> None:
        p = msg.partition
        if not decided.loaded(p):
            await sent.ensure(p, msg.timestamp)
        rid = req["request_id"]
        prior = decided.get(p, rid)
        if prior is not None:
            if prior[0] == msg.offset:  # read again after a crash or a takeover: already sent
                replayed.inc()
                return
            RESENT_DECISIONS.inc()
            await decisions_topic.send(key=msg.key, value=prior[1], partition=p,
                                       headers=[(OFFSET_HEADER, b"%d" % prior[0])])  # fmt: skip
            return
        if msg.timestamp and time.time() - msg.timestamp > max_age_s:
            STALE_REQUESTS.inc()
            return
        made = dispatch.decide(req)
        decision, shadows = made.record, made.shadows
        now = int(time.time() * 1000)
        decision["decided_at"] = now
        decision["decision_latency_us"] = int((time.perf_counter() - started) * 1e6)
        value = serde_out.encode(decision)
        await decisions_topic.send(key=msg.key, value=value, partition=p,
                                   headers=[(OFFSET_HEADER, b"%d" % msg.offset)])  # fmt: skip
        decided.put(p, rid, msg.offset, value)
        estimates.put(rid, made.estimate())  # calibration, residuals, the retry's cost
        if mon is not None and sink is not None:
            champion = slots.champion
            if champion is not served[0]:
                served[0] = champion
                mon.health.set_model(champion.label if champion else "none")
            alerts = mon.health.observe_decision(
                req["event_time"], made.p,
                req["amount_minor"], req["merchant_country"] != req["issuer_country"],
                req["sca_required"])  # fmt: skip
            if alerts:
                await sink.send(alerts)
        if shadows:
            added = made.shadow_seconds
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
                         EVENTS_IN.labels(s.topic_requests), ctx.offsets,
                         Admission(s))  # fmt: skip
