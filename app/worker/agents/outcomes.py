"""Outcome agent: learn from every outcome on the card's partition, batch it for the owners.

Outcomes arrive keyed by card, so card-level features (velocity, reattempt counters, last
decline) are updated right here, on the partition that also scores that card's requests; so are
route latency, the drift monitor and the retry decision of a decline. Statistics keyed by route,
BIN or merchant span every partition: the outcome's original Avro bytes are staged for the
owner of each of those keys and leave in one batch per owner partition at the next checkpoint
(app.state.deltas, app.worker.agents.checkpoint).

Guarantee: effectively once for state. Card state is staged and checkpointed with marks
(app.state.checkpoint): an outcome replayed after a crash or a rebalance whose effect is
already in the card state changes nothing and emits nothing again (no second RetryDecision,
no second drift sample); it is still forwarded, and the owners recognise it by their marks.
An outcome redelivered at another offset (same request_id) is recognised by the card's recent
outcome ids (app.state.dedupe) and skipped: no state change, no RetryDecision, not forwarded.
"""

from __future__ import annotations

from typing import Any

from faust.types import AppT, Message

from app.contracts.validate import validate_outcome
from app.features.online import FeatureState
from app.monitoring.metrics import DUPLICATE_OUTCOMES, EVENTS_IN, REPLAYED
from app.state.checkpoint import Current
from app.state.decided import forget_moved
from app.state.dedupe import add, contains, id_hash, seen_key
from app.worker.agents.alerts import AlertSink
from app.worker.agents.intake import Admission, guarded_agent, validated
from app.worker.agents.retries import RetryDecider
from app.worker.context import WorkerContext


def register(app: AppT, ctx: WorkerContext) -> Any:
    s = ctx.settings
    st = ctx.state
    card = st.card
    current = Current()  # the card store as seen by the outcome being applied
    card_features = FeatureState({"card": current})
    readers = FeatureState({"card": card})  # the retry decision reads the card's counters
    retries = RetryDecider(ctx, readers)
    latency = ctx.latency
    mon = ctx.monitoring
    estimates = ctx.estimates
    sink = AlertSink(ctx) if mon is not None else None
    replayed = REPLAYED.labels(s.topic_outcomes)
    duplicates = DUPLICATE_OUTCOMES
    dedupe_ms = int(s.outcome_dedupe_hours * 3_600_000)
    dedupe_cap = s.outcome_dedupe_per_card
    decode_outcome = validated(ctx.codec.outcome, validate_outcome)

    forget_moved(app, st.retried, s.topic_outcomes)

    def decode(value: bytes) -> tuple[dict[str, Any], bytes]:
        """The record and its Avro bytes, which are forwarded to the owners as they came."""
        return decode_outcome(value), value

    async def outcome(msg: Message, decoded: tuple[dict[str, Any], bytes], started: float) -> None:
        rec, raw = decoded
        p, off = msg.partition, msg.offset
        seen = seen_key(rec["card_fingerprint"])
        if card.marks(seen)[p] >= off:  # replayed: learned before the crash, so were its
            st.deltas.add(rec, raw, p, off)  # effects; the owners recognise it by their marks
            replayed.inc()
            return
        h = id_hash(rec["request_id"])
        if contains(card.get(seen), h):  # redelivered at another offset: nothing again, and
            duplicates.inc()  # not forwarded (the owners would see a new offset)
            return
        view = current.view = card.applying(p, p, off)
        card_features.update_outcome(rec, "card")
        view[seen] = add(card.get(seen), h, rec["event_time"], dedupe_ms, dedupe_cap)
        current.view = None
        est = estimates.pop(rec["request_id"])
        st.deltas.add(rec, raw, p, off, est.model_p if est is not None and est.learn else None)
        latency.observe(rec["route_id"], rec["latency_ms"], rec["event_time"])
        if mon is not None and sink is not None:
            alerts = (mon.health.observe_outcome_record(rec, est.model_p, est.p) if est is not None
                      else mon.health.observe_outcome_record(rec))  # fmt: skip
            if alerts:
                await sink.send(alerts)
        if not rec["approved"]:
            fee = est.fee if est is not None else None  # the declined route's, when known
            await retries.after_decline(rec, p, off, msg.timestamp, fee)

    return guarded_agent(app, ctx.topics.outcomes, "outcomes", decode, outcome, ctx.dlq,
                         EVENTS_IN.labels(s.topic_outcomes), ctx.offsets,
                         Admission(s, record=lambda d: d[0]))  # fmt: skip
