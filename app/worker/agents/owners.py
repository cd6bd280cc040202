"""State-owner agent: one owner per route / BIN / merchant key keeps its rings.

The outcome agent forwards each outcome, tagged by owner kind, to the internal owner-updates
topic keyed by that owner, so every key is updated by exactly one partition's owner and no two
workers ever increment the same key. The owner keeps feature rings (feature-state) and, for
routes, the success-rate windows of the fallback router (route-stats) in RocksDB tables, and
publishes them to the GlobalTables every worker's score agent reads (app.state.owned, throttled
by AUTHPILOT_STATE_PUBLISH_EVERY).

Guarantee: at-least-once, like the outcome agent that feeds it.
"""

from __future__ import annotations

from typing import Any

from faust.types import AppT, Message

from app.contracts.codec import DecodeError
from app.features.online import FeatureState
from app.monitoring.metrics import EVENTS_IN
from app.state.owned import OwnedState
from app.state.windows.count import CountRing, snapshot_bytes, update_success_rate
from app.worker.agents.intake import guarded_agent
from app.worker.context import WorkerContext

# owner kind -> (1-byte tag, record field that keys it)
OWNER_TAGS = {"route": (b"R", "route_id"), "bin": (b"B", "bin"), "merchant": (b"M", "merchant_id")}
_BY_TAG = {tag[0]: owner for owner, (tag, _) in OWNER_TAGS.items()}


def register(app: AppT, ctx: WorkerContext) -> Any:
    s = ctx.settings
    serde = ctx.codec.outcome
    tables = ctx.tables
    features = OwnedState(tables.feature_state, tables.feature_snapshots, s.state_publish_every)
    owned_features = FeatureState(dict.fromkeys(OWNER_TAGS, features))
    sr_ring = CountRing(s.sr_window, s.sr_min_samples)
    # Published on every update while a key holds <= sr_min_samples outcomes (a router starts
    # trusting a level at sr_min_samples, so these updates move decisions), then every N-th;
    # the route-sr GlobalTable holds 6-byte snapshots, not the 137-byte rings.
    success_rates = OwnedState(tables.route_stats, tables.route_sr, s.state_publish_every,
                               young=sr_ring.young, published_as=snapshot_bytes)  # fmt: skip

    @app.on_partitions_revoked.connect
    async def forget_published(*args: Any, **kwargs: Any) -> None:
        # another worker may own these keys next; when they come back, they publish at once
        features.forget()
        success_rates.forget()

    def decode(value: bytes) -> tuple[str, dict[str, Any]]:
        if not value:
            raise DecodeError("undecodable", "0 bytes: no owner tag")
        owner = _BY_TAG.get(value[0])
        if owner is None:
            raise DecodeError("undecodable", f"unknown owner tag {value[:1]!r}")
        return owner, serde.decode(value[1:])

    async def own(msg: Message, tagged: tuple[str, dict[str, Any]], started: float) -> None:
        owner, rec = tagged
        owned_features.update_outcome(rec, owner)
        if owner == "route":
            update_success_rate(success_rates, rec, sr_ring)

    topic = ctx.topics.owner_updates
    return guarded_agent(app, topic, "state-owner", decode, own, ctx.dlq,
                         EVENTS_IN.labels(topic.get_topic_name()))  # fmt: skip
