"""Outcome agent and route-stats owner: learn route x issuer success rates from outcomes.

Outcomes arrive keyed by card; the statistics are keyed by route x BIN / network+country / all,
which spans every partition. So the outcome agent repartitions one small update per outcome,
keyed by route, to an internal topic; the stats agent owning that route keeps the rings of all
the route's keys in a RocksDB table (changelogged) and publishes compact snapshots to a
GlobalTable that every worker's score agent reads. No two workers ever update the same key.
Keying by route puts a route's whole update stream on one partition: fine for tens of routes
at thousands of outcomes per second; a larger deployment would key by route x network x country
and drop the route-wide level.

Guarantee: at-least-once; a replayed outcome after a crash is counted twice in a window of B
outcomes, a bounded and self-healing error for a success-rate estimate.
"""

from __future__ import annotations

from typing import Any

from app.agents.context import WorkerContext
from app.agents.intake import decode_or_dead_letter, processing_failed
from app.metrics import EVENTS_IN
from app.routestats import (
    decode_update,
    encode_update,
    pack_snapshot,
    ring_snapshot,
    ring_update,
    stat_keys,
)
from app.validate import validate_outcome


def register(app: Any, ctx: WorkerContext) -> tuple[Any, Any]:
    s = ctx.settings
    serde = ctx.codec.outcome
    events_in = EVENTS_IN.labels(s.topic_outcomes)
    updates_topic = ctx.stats_updates
    dlq = ctx.dlq

    @app.agent(ctx.outcomes, name="outcomes")
    async def outcomes(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            events_in.inc()
            rec = await decode_or_dead_letter(msg, serde, validate_outcome, dlq)
            if rec is None:
                continue
            try:
                await updates_topic.send(key=rec["route_id"].encode(), value=encode_update(rec))
            except Exception as exc:
                await processing_failed(msg, exc, dlq)

    table = ctx.route_stats
    snapshots = ctx.route_sr
    window = s.sr_window
    every = max(1, s.sr_persist_every)
    min_samples = s.sr_min_samples
    stats_in = EVENTS_IN.labels(updates_topic.get_topic_name())
    # The newest ring of every key this worker owns, and updates not yet written to the table.
    # Writing the table (and so its changelog) on every outcome cost three changelog messages
    # per outcome and capped the closed loop at about 300 req/s; writing every N-th update
    # of a mature key loses at most N-1 outcomes of a 125-outcome window on a crash.
    rings: dict[bytes, bytes] = {}
    unsaved: dict[bytes, int] = {}

    @app.on_partitions_revoked.connect
    async def forget_rings(*args: Any, **kwargs: Any) -> None:
        # another worker may own these keys next: its writes would make our copies stale
        rings.clear()
        unsaved.clear()

    @app.agent(updates_topic, name="route-stats")
    async def route_stats(stream: Any) -> None:
        async for event in stream.events():
            stats_in.inc()
            msg = event.message
            try:
                route, bin_, network, country, code = decode_update(msg.value)
                for key in stat_keys(route, bin_, network, country):
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
            except Exception as exc:
                await processing_failed(msg, exc, dlq)

    return outcomes, route_stats
