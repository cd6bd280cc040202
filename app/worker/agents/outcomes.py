"""Outcome agent: learn from every outcome on the card's partition, forward it to the owners.

Outcomes arrive keyed by card, so card-level features (velocity, reattempt counters, last
decline) are updated right here, on the partition that also scores that card's requests; so are
route latency, the drift monitor and the retry decision of a decline. Statistics keyed by route,
BIN or merchant span every partition: the outcome's original Avro bytes go once per owner kind
to the internal owner-updates topic, keyed by that owner (app.worker.agents.owners).

Guarantee: at-least-once; a replayed outcome after a crash is counted twice, a bounded error
for window statistics that ages out with the window.
"""

from __future__ import annotations

from typing import Any

from faust.types import AppT, Message

from app.contracts.validate import validate_outcome
from app.features.online import FeatureState
from app.monitoring.metrics import EVENTS_IN
from app.worker.agents.alerts import AlertSink
from app.worker.agents.intake import guarded_agent, validated
from app.worker.agents.owners import OWNER_TAGS
from app.worker.agents.retries import RetryDecider
from app.worker.context import WorkerContext


def register(app: AppT, ctx: WorkerContext) -> Any:
    s = ctx.settings
    updates_topic = ctx.topics.owner_updates
    card_features = FeatureState({"card": ctx.tables.card_features})
    retries = RetryDecider(ctx, card_features)
    latency = ctx.latency
    mon = ctx.monitoring
    sink = AlertSink(ctx) if mon is not None else None
    owners = tuple(OWNER_TAGS.values())
    decode_outcome = validated(ctx.codec.outcome, validate_outcome)

    def decode(value: bytes) -> tuple[dict[str, Any], bytes]:
        """The record and its Avro bytes, which are forwarded to the owners as they came."""
        return decode_outcome(value), value

    async def outcome(msg: Message, decoded: tuple[dict[str, Any], bytes], started: float) -> None:
        rec, raw = decoded
        card_features.update_outcome(rec, "card")
        latency.observe(rec["route_id"], rec["latency_ms"])
        if mon is not None and sink is not None:
            alerts = mon.health.observe_outcome_record(rec, mon.estimates.pop(rec["request_id"]))
            if alerts:
                await sink.send(alerts)
        if not rec["approved"]:
            await retries.after_decline(rec)
        for tag, field in owners:
            await updates_topic.send(key=rec[field].encode(), value=tag + raw)

    return guarded_agent(app, ctx.topics.outcomes, "outcomes", decode, outcome, ctx.dlq,
                         EVENTS_IN.labels(s.topic_outcomes))  # fmt: skip
