"""State-owner agent: one owner per route / BIN / merchant key keeps its rings.

The outcome agent batches each outcome, tagged by owner kind, for the owner-updates partition
its key maps to (app.state.deltas), so every key is updated by exactly one partition's owner and
no two workers ever increment the same key. The owner keeps feature rings (feature-state) and,
for routes, the success-rate windows of the fallback router and the online correction's residual
sums (route-stats, app.state.windows.residual), staged and written
once per key per checkpoint, which also publishes them to the GlobalTables every worker's score
agent reads (app.state.checkpoint).

Guarantee: effectively once for state: each outcome in a batch carries its source partition
and offset, and a key that has seen that offset (its marks) skips it, so a batch replayed after
the owner's crash, or resent after the outcome agent's, changes nothing twice. A malformed item
is dead-lettered with the batch message's offset; the items before it were applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust.types import AppT, Message

from app.contracts.codec import DecodeError
from app.features.online import FeatureState
from app.monitoring.metrics import EVENTS_IN, REPLAYED
from app.routing.correction import CorrectionParams
from app.state.checkpoint import Current
from app.state.deltas import OWNER_TAGS, BatchError, Item, read_batch
from app.state.windows.count import CountRing, update_success_rate
from app.state.windows.residual import update_residuals
from app.worker.agents.intake import guarded_agent
from app.worker.context import WorkerContext


def register(app: AppT, ctx: WorkerContext) -> Any:
    s = ctx.settings
    serde = ctx.codec.outcome
    st = ctx.state
    features, success_rates = st.features, st.success_rates
    current = Current()
    owned_features = FeatureState(dict.fromkeys(OWNER_TAGS, current))
    sr_current = Current()
    sr_ring = CountRing(s.sr_window, s.sr_min_samples)
    decay = CorrectionParams.from_settings(s).decay
    dlq = ctx.dlq
    topic = ctx.topics.owner_updates
    replayed = REPLAYED.labels(topic.get_topic_name())

    def decode(value: bytes) -> tuple[int, Iterator[Item]]:
        try:
            return read_batch(value)
        except BatchError as exc:
            raise DecodeError("undecodable", str(exc)) from exc

    async def own(msg: Message, batch: tuple[int, Iterator[Item]], started: float) -> None:
        source, items = batch
        q = msg.partition
        try:
            for offset, owner, model_p, raw in items:
                try:
                    rec = serde.decode(raw)
                except DecodeError as exc:
                    await dlq.send(msg, exc.reason, f"item at source offset {offset}: "
                                                    f"{exc.detail}")  # fmt: skip
                    continue
                view = current.view = features.applying(q, source, offset)
                owned_features.update_outcome(rec, owner)
                if owner == "route":
                    sr_view = sr_current.view = success_rates.applying(q, source, offset)
                    update_success_rate(sr_current, rec, sr_ring)
                    if model_p == model_p:  # not NaN: it may teach the correction
                        update_residuals(sr_current, rec, model_p, decay)
                    if not (view.applied() or sr_view.applied()):
                        replayed.inc()
                elif not view.applied():
                    replayed.inc()
        except BatchError as exc:
            await dlq.send(msg, "undecodable", str(exc))
        finally:
            current.view = sr_current.view = None

    return guarded_agent(app, topic, "state-owner", decode, own, ctx.dlq,
                         EVENTS_IN.labels(topic.get_topic_name()), ctx.offsets)  # fmt: skip
