"""Prometheus metrics of the worker, served on its web port at /metrics.

Faust's own Prometheus sensor starts its latency buckets at 5 ms, useless for a decision that
takes tens of microseconds, so authpilot exports its own. The names below are a contract: the
Helm chart's alert rules and Grafana dashboard use them (helm/authpilot/files/metrics.txt) and a
test scrapes a running worker to check every one is exported.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

# 50 us .. 1 s: scoring is tens of microseconds, produce acknowledgements are milliseconds.
LATENCY_BUCKETS = (
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

EVENTS_IN = Counter(
    "authpilot_events_in", "Messages consumed, by topic", ["topic"], registry=REGISTRY
)
EVENTS_OUT = Counter(
    "authpilot_events_out", "Messages produced, by topic", ["topic"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "authpilot_dead_letters", "Messages sent to the dead-letter topic, by reason", ["reason"],
    registry=REGISTRY,
)  # fmt: skip
DECISION_LATENCY = Histogram(
    "authpilot_decision_latency_seconds",
    "Time from the worker taking a request off the stream to handing its decision to the producer",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DECISIONS = Counter(
    "authpilot_decisions", "Routing decisions, by policy and chosen route", ["policy", "route"],
    registry=REGISTRY,
)  # fmt: skip
CONSUMER_LAG = Gauge(
    "authpilot_consumer_lag", "Messages between the group's committed offset and the high "
    "watermark, by assigned partition (a commit that stops advancing shows here)",
    ["topic", "partition"], registry=REGISTRY,
)  # fmt: skip
STALE_REQUESTS = Counter(
    "authpilot_stale_requests", "Requests not decided because they were older than "
    "AUTHPILOT_REQUEST_MAX_AGE_MS when read", registry=REGISTRY,
)  # fmt: skip
RESENT_DECISIONS = Counter(
    "authpilot_resent_decisions", "Requests sent again by a gateway (same request_id, another "
    "offset) answered with their first decision", registry=REGISTRY,
)  # fmt: skip
OFFSET_GAPS = Counter(
    "authpilot_offset_gaps", "Reads that jumped over offsets of an input topic (not committed "
    "over; re-read by the offset watchdog), by topic", ["topic"], registry=REGISTRY,
)  # fmt: skip
OFFSET_REWINDS = Counter(
    "authpilot_offset_rewinds", "Partitions re-read from the next offset to handle because a "
    "record went missing on the way to the agent, by topic", ["topic"], registry=REGISTRY,
)  # fmt: skip
MODEL_LOAD_FAILURES = Counter(
    "authpilot_model_load_failures", "Model artifacts refused at load, by reason", ["reason"],
    registry=REGISTRY,
)  # fmt: skip
MODEL_INFO = Gauge(
    "authpilot_model_info", "1 for each model a worker serves", ["name", "version", "role"],
    registry=REGISTRY,
)  # fmt: skip
DRIFT_ALARM = Gauge(
    "authpilot_drift_alarm", "1 while a drift detector's alarm is raised", ["detector", "target"],
    registry=REGISTRY,
)  # fmt: skip
ROUTE_DEMOTED = Gauge(
    "authpilot_route_demoted", "1 while a route is demoted by the monitor", ["route"],
    registry=REGISTRY,
)  # fmt: skip
SHADOW_LATENCY = Histogram(
    "authpilot_shadow_latency_seconds",
    "Time added to a request by scoring the shadow challengers (features reused)",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ALERTS = Counter(
    "authpilot_alerts", "Alerts raised by the drift monitor, by kind", ["kind"], registry=REGISTRY
)
STATE_WRITES = Counter(
    "authpilot_state_writes", "Values written to a state table by checkpoints, by table",
    ["table"], registry=REGISTRY,
)  # fmt: skip
CHECKPOINT_SECONDS = Histogram(
    "authpilot_checkpoint_seconds",
    "Time a checkpoint holds the event loop: staged state written, owner deltas handed over",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DUPLICATE_OUTCOMES = Counter(
    "authpilot_duplicate_outcomes", "Outcomes skipped as a request_id the card already had "
    "(redelivered at another offset)", registry=REGISTRY,
)  # fmt: skip
REPLAYED = Counter(
    "authpilot_replayed", "Events skipped because their effect was already in the state "
    "(replayed after a crash or a rebalance), by topic", ["topic"], registry=REGISTRY,
)  # fmt: skip


def exposition() -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(REGISTRY)


# Every family above, as Prometheus names it in the exposition (counters without _total).
METRIC_NAMES = tuple(
    m._name for m in (EVENTS_IN, EVENTS_OUT, DEAD_LETTERS, DECISION_LATENCY, DECISIONS,
                      CONSUMER_LAG, MODEL_LOAD_FAILURES, MODEL_INFO, DRIFT_ALARM, ROUTE_DEMOTED,
                      SHADOW_LATENCY, ALERTS, STATE_WRITES, CHECKPOINT_SECONDS, REPLAYED,
                      DUPLICATE_OUTCOMES, OFFSET_GAPS, OFFSET_REWINDS, STALE_REQUESTS,
                      RESENT_DECISIONS)
)  # fmt: skip
