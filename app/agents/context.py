"""What every agent needs, built once per worker: settings, codec, topics, tables, sinks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.codec import Codec
from app.config import Settings
from app.deadletter import DeadLetterSink
from app.policy.success_rate import SRParams


@dataclass
class WorkerContext:
    settings: Settings
    codec: Codec
    sr_params: SRParams
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
    models: Any = None  # app.model.registry.ModelSlots
    features: Any = None  # app.features.online.FeatureState reading the tables above
    ev_params: Any = None  # app.policy.expected_value.EVParams
