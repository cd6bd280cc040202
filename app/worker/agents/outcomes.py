"""Outcome agent and state owners: learn from every outcome, one owner per key.

Outcomes arrive keyed by card, so card-level features (velocity, reattempt counters, last
decline) are updated right here, on the partition that also scores that card's requests.
Statistics keyed by route, BIN or merchant span every partition: the outcome agent forwards the
outcome's original Avro bytes once per owner kind (route, bin, merchant) to an internal topic
keyed by that owner; the owner agent keeps the rings in a RocksDB table (changelogged) and
publishes them to a GlobalTable every worker's score agent reads (app.state.owned, throttled by
AUTHPILOT_STATE_PUBLISH_EVERY). No two workers ever update the same key. The route owner also
keeps the success-rate windows of the fallback router.

Guarantee: at-least-once; a replayed outcome after a crash is counted twice, a bounded error
for window statistics that ages out with the window.
"""

from __future__ import annotations

import time
from typing import Any

from app.contracts.validate import validate_outcome
from app.features.online import FeatureState
from app.monitoring.metrics import EVENTS_IN, EVENTS_OUT
from app.retry import registry as retry_registry
from app.retry.counters import card_counters
from app.retry.engine import RetryParams, load_recovery
from app.retry.rules import NetworkRules
from app.state.owned import OwnedState
from app.state.windows.count import CountRing, snapshot_bytes, update_success_rate
from app.worker.agents.alerts import AlertSink
from app.worker.agents.intake import decode_or_dead_letter, processing_failed
from app.worker.context import WorkerContext

# owner kind -> (1-byte tag, record field that keys it)
OWNER_TAGS = {"route": (b"R", "route_id"), "bin": (b"B", "bin"), "merchant": (b"M", "merchant_id")}
_BY_TAG = {tag[0]: owner for owner, (tag, _) in OWNER_TAGS.items()}


def register(app: Any, ctx: WorkerContext) -> tuple[Any, Any]:
    s = ctx.settings
    serde = ctx.codec.outcome
    events_in = EVENTS_IN.labels(s.topic_outcomes)
    updates_topic = ctx.stats_updates
    dlq = ctx.dlq
    card_features = FeatureState({"card": ctx.card_features})
    features = OwnedState(ctx.feature_state, ctx.feature_snapshots, s.state_publish_every)
    owned_features = FeatureState(dict.fromkeys(OWNER_TAGS, features))

    rules = NetworkRules(s.visa_rules_variant)
    retry_params = RetryParams(s.ev_margin_bps, s.retry_attempt_cost_minor,
                               recovery=load_recovery(s.retry_recovery_file,
                                                      s.retry_pay_calendar))  # fmt: skip
    retry_serde = ctx.codec.retry
    retry_out = EVENTS_OUT.labels(s.topic_retry_decisions)

    async def decide_retry_for(rec: dict[str, Any]) -> None:
        """One RetryDecision per decline, from the card's counters as they stand now."""
        counters = card_counters(card_features, rec, rec["event_time"])
        d = retry_policy.after_decline(rec, counters, int(time.time() * 1000))
        await ctx.retry_decisions.send(key=rec["card_fingerprint"].encode(),
                                       value=retry_serde.encode(d))  # fmt: skip
        retry_out.inc()

    health = ctx.health
    estimates = ctx.estimates
    latency = ctx.latency
    sink = AlertSink(ctx) if health is not None else None
    retry_policy = retry_registry.build(s.retry_policy, rules, retry_params)

    @app.agent(ctx.outcomes, name="outcomes")
    async def outcomes(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            events_in.inc()
            rec = await decode_or_dead_letter(msg, serde, validate_outcome, dlq)
            if rec is None:
                continue
            try:
                card_features.update_outcome(rec, "card")
                if latency is not None:
                    latency.observe(rec["route_id"], rec["latency_ms"])
                if health is not None:
                    alerts = health.observe_outcome_record(rec, estimates.pop(rec["request_id"]))
                    if alerts:
                        await sink.send(alerts)
                if not rec["approved"]:
                    await decide_retry_for(rec)
                for tag, field in OWNER_TAGS.values():
                    await updates_topic.send(key=rec[field].encode(), value=tag + msg.value)
            except Exception as exc:
                await processing_failed(msg, exc, dlq)

    sr_ring = CountRing(s.sr_window, s.sr_min_samples)
    # Published on every update while a key holds <= sr_min_samples outcomes (a router starts
    # trusting a level at sr_min_samples, so these updates move decisions), then every N-th;
    # the route-sr GlobalTable holds 6-byte snapshots, not the 137-byte rings.
    success_rates = OwnedState(ctx.route_stats, ctx.route_sr, s.state_publish_every,
                               young=sr_ring.young, published_as=snapshot_bytes)  # fmt: skip
    stats_in = EVENTS_IN.labels(updates_topic.get_topic_name())

    @app.on_partitions_revoked.connect
    async def forget_published(*args: Any, **kwargs: Any) -> None:
        # another worker may own these keys next; when they come back, they publish at once
        features.forget()
        success_rates.forget()

    @app.agent(updates_topic, name="state-owner")
    async def state_owner(stream: Any) -> None:
        async for event in stream.events():
            stats_in.inc()
            msg = event.message
            try:
                owner = _BY_TAG[msg.value[0]]
                rec = serde.decode(msg.value[1:])
                owned_features.update_outcome(rec, owner)
                if owner == "route":
                    update_success_rate(success_rates, rec, sr_ring)
            except Exception as exc:
                await processing_failed(msg, exc, dlq)

    return outcomes, state_owner
