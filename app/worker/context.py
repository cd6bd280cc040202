"""What every agent needs, built once per worker: settings, codec, topics, tables, sinks."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.contracts.codec import Codec
from app.kafka.deadletter import DeadLetterSink


@dataclass
class WorkerContext:
    settings: Settings
    codec: Codec
    requests: Any  # faust topics
    outcomes: Any
    decisions: Any
    stats_updates: Any
    dead_letter: Any
    retry_decisions: Any
    route_stats: Any  # Table: ring per route x key, owned by one partition
    route_sr: Any  # GlobalTable: snapshots every worker reads
    card_features: Any  # Table keyed by card entities, co-partitioned with requests/outcomes
    feature_state: Any  # Table: route/bin/merchant feature rings, owned by one partition
    feature_snapshots: Any  # GlobalTable: the same rings, readable by every worker
    dlq: DeadLetterSink
    shadow: Any = None  # topic of challengers' shadow decisions
    alerts: Any = None  # topic of drift alerts
    health: Any = None  # app.monitoring.route_health.HealthMonitor, None = monitoring off
    estimates: Recent | None = None  # request_id -> the decision's p for its chosen route
    oracle_p: Any = None  # (request, route) -> simulator truth, only with oracle_scenario
    latency: Any = None  # app.routing.latency.RouteLatency, fed by the outcome agent
    models: Any = None  # app.models.serving.registry.ModelSlots
    features: Any = None  # app.features.online.FeatureState reading the tables above


class Recent:
    """A bounded map of the newest entries: the score agent leaves each decision's estimate
    here and the outcome agent (same partition: requests and outcomes are keyed by card) takes
    it back for calibration monitoring. Oldest entries go first; a lost one only skips one
    calibration sample."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._d: OrderedDict[str, Any] = OrderedDict()

    def put(self, key: str, value: Any) -> None:
        self._d[key] = value
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)

    def pop(self, key: str) -> Any:
        return self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)
