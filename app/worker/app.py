"""The Faust worker: topics, tables, agents and the web endpoints, wired from one Settings.

Run it with `authpilot worker`. Helm runs one per pod; more pods in the same consumer group
(app id) share the partitions, Kafka does the rest.
"""

from __future__ import annotations

import logging
import socket
from functools import partial
from typing import Any

import faust
from faust.types import TopicT
from faust.types.tables import GlobalTableT, TableT

from app.config import Settings
from app.contracts.codec import Codec
from app.features.definitions import feature_hash
from app.features.online import FeatureState
from app.kafka.connection import faust_broker, faust_credentials
from app.kafka.deadletter import DeadLetterSink
from app.kafka.offsets import guard_offsets, start_new_group_at_end
from app.lifecycle.registry import local_copy
from app.models.serving.registry import ControlWatcher, ModelSlots
from app.monitoring.health import HealthMonitor
from app.monitoring.logs import quiet_repeats
from app.routing.latency import RouteLatency
from app.state.checkpoint import Checkpointed, Publication, card_group, faust_writer
from app.state.decided import Decided
from app.state.deltas import DeltaBatcher
from app.state.published import PublishedReader
from app.state.windows.residual import published as route_stat_published
from app.worker import web
from app.worker.agents import alerts as alert_agents
from app.worker.agents import checkpoint as checkpoint_agent
from app.worker.agents import outcomes as outcome_agents
from app.worker.agents import owners as owner_agents
from app.worker.agents import score as score_agent
from app.worker.context import Monitoring, Recent, State, Tables, Topics, WorkerContext

log = logging.getLogger(__name__)


def cap_fetch_wait(ms: int) -> None:
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


def idempotent_producer() -> None:
    """Make Faust's aiokafka producer idempotent, which Faust 0.15.3 does only for
    exactly_once (its Producer._settings_extra), not for the worker's at_least_once.

    Without it a produce request that the broker appended but could not answer (SIGKILLed
    mid-request) is sent again after the broker returns, and the topic holds the message
    twice: `authpilot chaos --scenarios broker --short` read a second RetryDecision for 1 of 818
    declines (stop 39). With sequence numbers the broker drops the resent batch. acks is
    already all (producer_options), which idempotence requires.
    """
    from faust.transport.drivers import aiokafka as driver

    if getattr(driver.Transport.Producer, "_authpilot_idempotent", False):
        return

    class IdempotentProducer(driver.Producer):
        _authpilot_idempotent = True

        def _settings_extra(self) -> Any:
            return {**super()._settings_extra(), "enable_idempotence": True}

    driver.Transport.Producer = IdempotentProducer


def producer_options(s: Settings) -> dict[str, Any]:
    """The Faust producer settings the worker runs with (the bare-Faust benchmark uses the same).

    Linger: with 0 every decision and changelog message was its own produce request: a py-spy
    profile of the closed loop had 31% of the worker in aiokafka's socket writes, and the
    producer buffer filled (5,000 messages) so commits overran 15 s. See AUTHPILOT_PRODUCER_
    LINGER_MS for the measured trade-off."""
    return {"producer_linger_ms": s.producer_linger_ms, "producer_acks": -1}


def run_faust(app: faust.App, s: Settings) -> None:
    """Run a Faust app as a worker process, without Faust's terminal spinner.

    At log levels of WARNING and above Faust keeps its spinner, sets the root logger to DEBUG
    and attaches a handler that spins on every record: every logger.debug() on the hot path
    (aiokafka's per-request ones, faust.topics' per-message one) then builds a LogRecord.
    Measured: ~6% of the closed-loop worker in Logger._log; ~9% of a bare agent."""
    worker = faust.Worker(app, loglevel=s.log_level.upper())
    worker.spinner = None
    worker.execute_from_commandline()


def build_app(s: Settings) -> tuple[faust.App, WorkerContext]:
    """A configured Faust app with every agent registered (nothing started)."""
    rocks = s.store.startswith("rocksdb")
    cap_fetch_wait(s.fetch_max_wait_ms)
    idempotent_producer()
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
        broker_session_timeout=s.consumer_session_timeout_ms / 1000.0,
        broker_heartbeat_interval=s.consumer_heartbeat_ms / 1000.0,
        consumer_group_instance_id=s.group_instance_id,
        autodiscover=False,
        **producer_options(s),
    )
    table_opts = {"driver": "rocksdict"} if rocks else None
    # Table writes queue changelog messages in Faust's ProducerBuffer; past max_messages (100 by
    # default) the conductor stops all streams and drains it one message per 0.1 s wait. With
    # three ring writes per outcome that stalled decisions for seconds at 300 req/s.
    app.producer.buffer.max_messages = s.changelog_buffer

    def raw_topic(name: str, **kw: Any) -> TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", **kw)

    def table(name: str) -> TableT[bytes, bytes]:
        return app.Table(
            name, key_type=bytes, value_type=bytes, partitions=s.partitions, options=table_opts
        )

    def global_table(name: str, reader: PublishedReader) -> GlobalTableT:
        # Every worker restores all of it. It has as many partitions as the updates topic
        # because Faust writes a table change to the partition of the event being processed
        # (partitions=1 fails with PartitionsMismatch when written from an owner agent);
        # recovery_buffer_size=1 is the documented guard against the GlobalTable recovery loop.
        t = app.GlobalTable(
            name,
            key_type=bytes,
            value_type=bytes,
            partitions=s.partitions,
            recovery_buffer_size=1,
            options=table_opts,
            on_changelog_event=reader.on_changelog_event,
        )
        reader.attach(t)
        return t

    topics = Topics(
        requests=raw_topic(s.topic_requests),
        outcomes=raw_topic(s.topic_outcomes),
        decisions=raw_topic(s.topic_decisions),
        owner_updates=raw_topic(f"{s.app_id}-owner-updates", internal=True),
        dead_letter=raw_topic(s.topic_dead_letter),
        retry_decisions=raw_topic(s.topic_retry_decisions),
        shadow=raw_topic(s.topic_shadow),
        alerts=raw_topic(s.topic_alerts),
    )
    snapshots = PublishedReader(s.state_read_cache)
    sr_snapshots = PublishedReader(s.state_read_cache)
    tables = Tables(
        card_features=table("card-features"),
        feature_state=table("feature-state"),
        feature_snapshots=global_table("feature-snapshots", snapshots),
        route_stats=table("route-stats"),
        route_sr=global_table("route-sr", sr_snapshots),
    )
    n = s.partitions
    state = State(
        card=Checkpointed(tables.card_features, faust_writer(tables.card_features), n,
                          group=card_group),
        features=Checkpointed(
            tables.feature_state, faust_writer(tables.feature_state), n,
            publish=Publication(snapshots.writer(faust_writer(tables.feature_snapshots)))),
        success_rates=Checkpointed(
            tables.route_stats, faust_writer(tables.route_stats), n,
            publish=Publication(sr_snapshots.writer(faust_writer(tables.route_sr)),
                                route_stat_published)),
        deltas=DeltaBatcher(n),
        decided=Decided(s.decided_per_partition),
        retried=Decided(s.decided_per_partition),
        snapshots=snapshots,
        sr_snapshots=sr_snapshots,
    )  # fmt: skip
    codec = Codec(s)
    oracle_p = None
    if s.oracle_scenario:  # demos and benchmarks only: the simulator's truth as a policy
        from app.sim.truth import oracle_for

        oracle_p = oracle_for(s.oracle_scenario)
    inputs = {s.topic_requests, s.topic_outcomes, topics.owner_updates.get_topic_name()}
    ctx = WorkerContext(
        settings=s,
        codec=codec,
        topics=topics,
        tables=tables,
        state=state,
        dlq=DeadLetterSink(topics.dead_letter, codec.dead_letter, socket.gethostname()),
        offsets=guard_offsets(app, inputs, s.input_transactional),
        features=FeatureState(
            {
                "card": state.card,
                "route": snapshots,
                "bin": snapshots,
                "merchant": snapshots,
            }
        ),
        latency=RouteLatency(),
        models=ModelSlots(s.model_dir, feature_hash(), fetch=partial(local_copy, s)),
        control=ControlWatcher(s),
        monitoring=Monitoring(HealthMonitor()) if s.drift_monitor else None,
        estimates=Recent(),
        oracle_p=oracle_p,
    )

    @app.task
    async def watch_control() -> None:
        ctx.control.start()

    _register_models(app, ctx)
    score_agent.register(app, ctx)
    outcome_agents.register(app, ctx)
    owner_agents.register(app, ctx)
    alert_agents.register(app, ctx)
    checkpoint_agent.register(app, ctx)
    web.register(app, ctx)
    return app, ctx


def _register_models(app: faust.App, ctx: WorkerContext) -> None:
    """Watch the control topic; load promoted models off the loop; swap them on it."""
    import asyncio

    from app.models.artifact import ModelRejected

    s = ctx.settings
    watcher = ctx.control

    from app.lifecycle.status import StatusReporter

    reporter = StatusReporter(s)
    reported = [False]

    @app.timer(s.model_poll_seconds)
    async def reconcile_models() -> None:
        loop = asyncio.get_running_loop()
        pending = ctx.models.pending(watcher.snapshot())
        for key, rec in pending:
            try:
                model = await loop.run_in_executor(None, ctx.models.load, rec)
                ctx.models.install(key, rec, model, None)
            except ModelRejected as exc:
                ctx.models.install(key, rec, None, exc)
            except Exception as exc:  # never let a bad artifact take the worker down
                ctx.models.install(key, rec, None, ModelRejected("load", repr(exc)))
        if pending or (not reported[0] and watcher.caught_up.is_set()):
            reported[0] = True  # what this worker serves, for `authpilot models`
            try:
                await loop.run_in_executor(None, reporter.report, ctx.models.serving(),
                                           dict(ctx.models.refused))  # fmt: skip
            except Exception as exc:  # a report is informational: never stop serving for it
                log.warning("serving report not written: %r", exc)


def run_worker(s: Settings) -> None:
    """Create topics, then run the worker until SIGTERM/SIGINT (graceful: offsets committed)."""
    from app.kafka.topics import ensure_topics

    ensure_topics(s)
    start_new_group_at_end(s)
    app, _ = build_app(s)
    quiet_repeats()
    run_faust(app, s)
