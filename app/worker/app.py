"""The Faust worker: topics, tables, agents and the web endpoints, wired from one Settings.

Run it with `authpilot worker`. Helm runs one per pod; more pods in the same consumer group
(app id) share the partitions, Kafka does the rest.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import faust

from app.config import Settings
from app.contracts.codec import Codec
from app.features.definitions import FEATURE_NAMES, feature_hash
from app.features.online import FeatureState, new_buffer
from app.kafka.connection import faust_broker, faust_credentials
from app.kafka.deadletter import DeadLetterSink
from app.models.serving.registry import ModelSlots
from app.monitoring.metrics import CONSUMER_LAG, exposition
from app.routing.latency import RouteLatency
from app.worker.agents import alerts as monitor_agents
from app.worker.agents import outcomes as outcome_agents
from app.worker.agents import score as score_agent
from app.worker.context import Recent, WorkerContext

log = logging.getLogger(__name__)


def _cap_fetch_wait(ms: int) -> None:
    """Cap aiokafka's fetch_max_wait_ms, which Faust 0.15.3 hard-codes to 1500 ms.

    One consumer fetches every assigned partition, changelogs and GlobalTable partitions
    included. While records of busy partitions are being processed, the next fetch holds only
    the quiet ones and the broker parks it for fetch_max_wait_ms, so new requests waited up to
    1.5 s: measured 1.3-1.7 s end-to-end p50 at 300 req/s. A few milliseconds keeps latency
    low for the cost of more (cheap, local) fetch requests.
    """
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    base = aiokafka.AIOKafkaConsumer
    if getattr(driver.aiokafka.AIOKafkaConsumer, "_authpilot_capped", False):
        return

    class CappedConsumer(base):  # type: ignore[misc, valid-type]
        _authpilot_capped = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", ms), ms)
            super().__init__(*args, **kwargs)

    driver.aiokafka.AIOKafkaConsumer = CappedConsumer


def build_app(s: Settings) -> tuple[faust.App, WorkerContext]:
    """A configured Faust app with every agent registered (nothing started)."""
    rocks = s.store.startswith("rocksdb")
    _cap_fetch_wait(s.fetch_max_wait_ms)
    app = faust.App(
        s.app_id,
        broker=faust_broker(s),
        broker_credentials=faust_credentials(s),
        store=s.store,
        datadir=str(s.data_dir),
        web_port=s.web_port,
        web_host=s.web_host,
        web_bind=s.web_host,
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        table_standby_replicas=s.table_standby_replicas,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        # One decision per request must leave quickly: do not hold produce batches.
        producer_linger_ms=0,
        producer_acks=-1,
    )
    table_opts = {"driver": "rocksdict"} if rocks else None
    # Table writes queue changelog messages in Faust's ProducerBuffer; past max_messages (100 by
    # default) the conductor stops all streams and drains it one message per 0.1 s wait. With
    # three ring writes per outcome that stalled decisions for seconds at 300 req/s.
    app.producer.buffer.max_messages = s.changelog_buffer

    def raw_topic(name: str, **kw: Any) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw", **kw)

    stats_updates = raw_topic(f"{s.app_id}-owner-updates", internal=True)

    def table(name: str) -> Any:
        return app.Table(
            name, key_type=bytes, value_type=bytes, partitions=s.partitions, options=table_opts
        )

    def global_table(name: str) -> Any:
        # Every worker restores all of it. It has as many partitions as the updates topic
        # because Faust writes a table change to the partition of the event being processed
        # (partitions=1 fails with PartitionsMismatch when written from an owner agent);
        # recovery_buffer_size=1 is the documented guard against the GlobalTable recovery loop.
        return app.GlobalTable(
            name,
            key_type=bytes,
            value_type=bytes,
            partitions=s.partitions,
            recovery_buffer_size=1,
            options=table_opts,
        )

    ctx = WorkerContext(
        settings=s,
        codec=Codec(s),
        requests=raw_topic(s.topic_requests),
        outcomes=raw_topic(s.topic_outcomes),
        decisions=raw_topic(s.topic_decisions),
        stats_updates=stats_updates,
        dead_letter=raw_topic(s.topic_dead_letter),
        retry_decisions=raw_topic(s.topic_retry_decisions),
        route_stats=table("route-stats"),
        route_sr=global_table("route-sr"),
        card_features=table("card-features"),
        feature_state=table("feature-state"),
        feature_snapshots=global_table("feature-snapshots"),
        dlq=None,  # type: ignore[arg-type]
    )
    ctx.dlq = DeadLetterSink(ctx.dead_letter, ctx.codec.dead_letter, f"{socket.gethostname()}")
    ctx.features = FeatureState(
        {
            "card": ctx.card_features,
            "route": ctx.feature_snapshots,
            "bin": ctx.feature_snapshots,
            "merchant": ctx.feature_snapshots,
        }
    )
    ctx.latency = RouteLatency()
    ctx.shadow = raw_topic(s.topic_shadow)
    ctx.alerts = raw_topic(s.topic_alerts)
    if s.drift_monitor:
        from app.monitoring.route_health import HealthMonitor

        ctx.health = HealthMonitor()
        ctx.estimates = Recent()
    if s.oracle_scenario:
        from app.sim import load_world
        from app.sim.truth import p_approve

        world = load_world(s.oracle_scenario)
        ctx.oracle_p = lambda req, route: p_approve(world, req, route)
    ctx.models = ModelSlots(s.model_dir, feature_hash())
    _register_models(app, ctx)
    score_agent.register(app, ctx)
    outcome_agents.register(app, ctx)
    monitor_agents.register(app, ctx)
    _register_web(app, ctx)
    return app, ctx


def _register_web(app: faust.App, ctx: WorkerContext) -> None:
    s = ctx.settings
    lag_topics = {s.topic_requests, s.topic_outcomes, ctx.stats_updates.get_topic_name()}

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses parameters in content_type, so the full header goes in headers.
        return web.bytes(
            exposition(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    # The owner tables, not the published snapshots: this endpoint shows the table state
    # (exact on the worker that owns the keys; snapshots may lag by state_publish_every).
    reader = FeatureState(
        {
            "card": ctx.card_features,
            "route": ctx.feature_state,
            "bin": ctx.feature_state,
            "merchant": ctx.feature_state,
        }
    )

    @app.page("/debug/features")
    class DebugFeatures(faust.web.View):
        """POST a JSON list of requests: the feature rows this worker would build for them now.

        For operators asking "what did the model see", and for the restart test. Card-level
        features are only on the worker that owns the card's partition.
        """

        async def post(self, request: Any) -> Any:
            reqs = await request.json()
            buf = new_buffer(64)
            rows = {}
            for r in reqs:
                out = reader.fill(r, buf)
                rows[r["request_id"]] = [[None if v != v else v for v in row] for row in out]
            return self.json({"names": list(FEATURE_NAMES), "rows": rows})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)

    @app.timer(5.0)
    async def consumer_lag() -> None:
        try:
            for tp in app.consumer.assignment():
                if tp.topic not in lag_topics:
                    continue
                pos = await app.consumer.position(tp)
                hw = app.consumer.highwater(tp)
                if pos is not None and hw is not None:
                    CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(hw - pos, 0))
        except Exception:  # lag is observability, never a reason to fail
            log.debug("lag probe failed", exc_info=True)


def _register_models(app: faust.App, ctx: WorkerContext) -> None:
    """Watch the control topic; load promoted models off the loop; swap them on it."""
    import asyncio

    from app.models.artifact import ModelRejected
    from app.models.serving.registry import ControlWatcher

    s = ctx.settings
    watcher: list[ControlWatcher] = []

    @app.timer(s.model_poll_seconds)
    async def reconcile_models() -> None:
        if not watcher:
            watcher.append(ControlWatcher(s).start())
        loop = asyncio.get_running_loop()
        for key, rec in ctx.models.pending(watcher[0].snapshot()):
            try:
                model = await loop.run_in_executor(None, ctx.models.load, rec)
                ctx.models.install(key, rec, model, None)
            except ModelRejected as exc:
                ctx.models.install(key, rec, None, exc)
            except Exception as exc:  # never let a bad artifact take the worker down
                ctx.models.install(key, rec, None, ModelRejected("load", repr(exc)))


def run_worker(s: Settings) -> None:
    """Create topics, then run the worker until SIGTERM/SIGINT (graceful: offsets committed)."""
    from app.kafka.topics import ensure_topics

    ensure_topics(s)
    app, _ = build_app(s)
    worker = faust.Worker(app, loglevel=s.log_level.upper())
    worker.execute_from_commandline()
