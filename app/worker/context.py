"""The typed services every agent is built from, assembled once per worker by build_app."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from faust.types import TopicT
from faust.types.tables import GlobalTableT, TableT

from app.config import Settings
from app.contracts.codec import Codec
from app.features.online import FeatureState
from app.kafka.deadletter import DeadLetterSink
from app.kafka.offsets import OffsetGuard
from app.models.serving.registry import ControlWatcher, ModelSlots
from app.monitoring.health import HealthMonitor
from app.routing.dispatch import Estimate
from app.routing.latency import RouteLatency
from app.routing.oracle import OracleP
from app.state.checkpoint import Checkpointed
from app.state.decided import Decided
from app.state.deltas import DeltaBatcher
from app.state.published import PublishedReader


@dataclass(frozen=True)
class Topics:
    """Every topic the worker reads or writes (raw bytes: the codec does Avro)."""

    requests: TopicT
    outcomes: TopicT
    decisions: TopicT
    owner_updates: TopicT  # internal: outcome batches for the route / BIN / merchant owners
    dead_letter: TopicT
    retry_decisions: TopicT
    shadow: TopicT  # challengers' shadow decisions
    alerts: TopicT  # drift alerts


@dataclass(frozen=True)
class Tables:
    """RocksDB tables (changelogged). Owned tables are written by one partition's owner;
    GlobalTables are their published copies, restored by every worker."""

    card_features: TableT[bytes, bytes]  # card entities, co-partitioned with requests, outcomes
    feature_state: TableT[bytes, bytes]  # route / BIN / merchant feature rings, owned per key
    # GlobalTableT subclasses a bare TableT, so faust gives it no type parameters (bytes, bytes)
    feature_snapshots: GlobalTableT  # the same rings, readable by every worker
    route_stats: TableT[bytes, bytes]  # success-rate rings per route x key, owned per key
    route_sr: GlobalTableT  # their snapshots, readable by every worker


@dataclass(frozen=True)
class State:
    """The worker's learned state as its agents use it: staged, checkpointed stores over the
    tables (app.state.checkpoint) and the owner deltas waiting for the next checkpoint."""

    card: Checkpointed  # card entities, one value per card (card-features table)
    features: Checkpointed  # owned feature rings -> feature-snapshots
    success_rates: Checkpointed  # owned success-rate rings -> route-sr snapshots
    deltas: DeltaBatcher  # outcomes on their way to the owners
    decided: Decided  # decisions sent, per request partition (replays and resent requests)
    retried: Decided  # RetryDecisions sent, per outcome partition
    snapshots: PublishedReader  # feature-snapshots, read by the score agent
    sr_snapshots: PublishedReader  # route-sr, read by the score agent

    def stores(self) -> dict[str, Checkpointed]:
        return {"card-features": self.card, "feature-state": self.features,
                "route-stats": self.success_rates}  # fmt: skip


class Recent:
    """A bounded map of the newest entries: the score agent leaves each decision's estimate
    here and the outcome agent (same partition: requests and outcomes are keyed by card) takes
    it back for calibration monitoring, the online correction's residuals and the chosen
    route's fee (what a retry costs). Oldest entries go first; a lost one (evicted, or decided
    by the worker that had the partition before a rebalance or a crash) only skips one
    calibration sample and one residual, and prices that decline's retry at the configured
    AUTHPILOT_RETRY_ATTEMPT_COST_MINOR."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._d: OrderedDict[str, Estimate] = OrderedDict()

    def put(self, key: str, value: Estimate) -> None:
        self._d[key] = value
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)

    def pop(self, key: str) -> Estimate | None:
        return self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)


@dataclass(frozen=True)
class Monitoring:
    """The drift monitor."""

    health: HealthMonitor


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    codec: Codec
    topics: Topics
    tables: Tables
    state: State
    dlq: DeadLetterSink
    offsets: OffsetGuard  # input offsets handled in order, never committed over a hole
    features: FeatureState  # the score agent's reader: card state + published snapshots
    latency: RouteLatency  # per-route latency EWMA, fed by the outcome agent
    models: ModelSlots
    control: ControlWatcher  # the control topic's promotions, read by a daemon thread
    monitoring: Monitoring | None  # None: AUTHPILOT_DRIFT_MONITOR=false
    estimates: Recent  # each decision's estimates, until its outcome
    oracle_p: OracleP | None  # the simulator's truth, only with AUTHPILOT_ORACLE_SCENARIO
