"""Outcome agent and state owners: learn from every outcome, one owner per key.

Outcomes arrive keyed by card, so card-level features (velocity, reattempt counters, last
decline) are updated right here, on the partition that also scores that card's requests.
Statistics keyed by route, BIN or merchant span every partition: the outcome agent forwards the
outcome's original Avro bytes once per owner kind (route, bin, merchant) to an internal topic
keyed by that owner; the owner agent keeps the rings in a RocksDB table (changelogged) and
publishes them to a GlobalTable every worker's score agent reads. No two workers ever update the
same key. The route owner also keeps the success-rate windows of the fallback router.

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
from app.state.windows.count import (
    outcome_code,
    pack_snapshot,
    ring_snapshot,
    ring_update,
    stat_keys,
)
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
    published = _Published(ctx.feature_state, ctx.feature_snapshots, s.feature_publish_every)
    owned_features = FeatureState(dict.fromkeys(OWNER_TAGS, published))

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

    table = ctx.route_stats
    snapshots = ctx.route_sr
    window = s.sr_window
    every = max(1, s.sr_persist_every)
    min_samples = s.sr_min_samples
    stats_in = EVENTS_IN.labels(updates_topic.get_topic_name())
    # The newest success-rate ring of every key this worker owns, and updates not yet written.
    # Writing the table (and so its changelog) every N-th update of a mature key loses at most
    # N-1 outcomes of a 125-outcome window on a crash, for 10x fewer changelog messages.
    rings: dict[bytes, bytes] = {}
    unsaved: dict[bytes, int] = {}

    @app.on_partitions_revoked.connect
    async def forget_rings(*args: Any, **kwargs: Any) -> None:
        # another worker may own these keys next: its writes would make our copies stale
        rings.clear()
        unsaved.clear()
        published.forget()

    def update_success_rate(rec: dict[str, Any]) -> None:
        code = outcome_code(rec)
        for key in stat_keys(rec["route_id"], rec["bin"], rec["network"], rec["issuer_country"]):
            k = key.encode()
            old = rings.get(k)
            value, _ = ring_update(old if old is not None else table.get(k), code, window)
            rings[k] = value
            n = unsaved.get(k, 0) + 1
            snap = ring_snapshot(value)
            # Persist and publish every update while a key is young (its estimate moves
            # fast), then every N-th: the GlobalTable changelog is read by every worker.
            if snap.samples <= min_samples or n >= every:
                table[k] = value
                snapshots[k] = pack_snapshot(snap)
                n = 0
            unsaved[k] = n

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
                    update_success_rate(rec)
            except Exception as exc:
                await processing_failed(msg, exc, dlq)

    return outcomes, state_owner


class _Published:
    """A mapping over the owner's table (every write: it is the durable state) that also
    publishes to the shared GlobalTable, every N-th write of a key after its first: each
    published ring is a changelog message every worker reads, and per-outcome publishing of
    six rings measured as the worker's bottleneck (Faust's changelog buffer filled, commits
    overran). Readers on other workers see a key at most N-1 outcomes late."""

    def __init__(self, table: Any, published: Any, every: int) -> None:
        self._table = table
        self._published = published
        self._every = max(1, every)
        self._since: dict[bytes, int] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._table.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value
        n = self._since.get(key)
        if n is None or n + 1 >= self._every:
            self._published[key] = value
            self._since[key] = 0
        else:
            self._since[key] = n + 1

    def forget(self) -> None:
        self._since.clear()
