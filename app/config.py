"""One frozen settings object, read once from AUTHPILOT_* environment variables.

Every tunable lives here with its default and the reason for it, so the Helm chart's ConfigMap,
the README's configuration table and the code agree on one list.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.retry.registry import RetryPolicyName
from app.routing.registry import RoutingPolicyName

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Runtime configuration of every authpilot command (worker, loadgen, CLI)."""

    model_config = SettingsConfigDict(env_prefix="AUTHPILOT_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="host:port[,host:port] of an existing cluster; unset = the embedded local "
        "broker on 127.0.0.1:kafka_port",
    )
    kafka_port: int = Field(19092, description="port of the embedded local broker")
    kafka_controller_port: int = Field(19093, description="KRaft controller port (local broker)")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version the local broker runs")
    kafka_home: Path = Field(
        Path.home() / ".cache" / "authpilot",
        description="cache for the resolved Kafka jars and the local broker's data",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = Field(None, description="e.g. SCRAM-SHA-512 or PLAIN")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None

    # --- topics ------------------------------------------------------------------------------
    topic_requests: str = "authpilot.requests"
    topic_outcomes: str = "authpilot.outcomes"
    topic_decisions: str = "authpilot.decisions"
    topic_retry_decisions: str = "authpilot.retry-decisions"
    topic_shadow: str = "authpilot.shadow-decisions"
    topic_alerts: str = "authpilot.alerts"
    topic_control: str = "authpilot.control"
    topic_dead_letter: str = "authpilot.dead-letter"
    partitions: int = Field(
        4, description="partitions of requests/outcomes/decisions; tables follow this count"
    )
    replication_factor: int = Field(1, description="replication of topics authpilot creates")

    # --- schemas -----------------------------------------------------------------------------
    schema_dir: Path = REPO_ROOT / "schemas"
    schema_registry_url: str | None = Field(
        None, description="Confluent-compatible registry; unset = schemas/registry.json"
    )

    schema_registry_user_info: str | None = Field(
        None, description="user:password for the registry's basic auth"
    )
    model_dir: Path = Field(
        REPO_ROOT / "compiled_models", description="compiled models: <name>/<version>/"
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow tracking and registry server (http://host:5000); unset = the "
        "embedded store under mlflow_dir (sqlite + an artifact folder, nothing to start)",
    )
    model_cache_dir: Path = Field(
        Path("var/model-cache"),
        description="where a worker (or retrain) downloads a promoted model that model_dir "
        "lacks, from the MLflow artifact store: writable, unlike an image's model_dir",
    )
    mlflow_dir: Path = Field(
        Path("var/mlflow"), description="the embedded MLflow store: mlflow.db and artifacts/"
    )
    kernel_dir: Path = Field(
        Path.home() / ".cache" / "authpilot" / "kernels",
        description="the compiled ring kernel (app.state.windows.kernel), built here with gcc "
        "on first use, one file per source version and Python ABI",
    )

    # --- worker ------------------------------------------------------------------------------
    app_id: str = Field("authpilot", description="Faust app id = consumer group id")
    data_dir: Path = Field(Path("var/worker"), description="RocksDB tables live here")
    web_port: int = Field(6066, description="worker HTTP port: /metrics, /healthz, /readyz")
    web_host: str = Field(
        "127.0.0.1",
        description="address the worker's HTTP port binds: loopback by default, because it "
        "serves card-level features at /debug/features; the Helm chart sets the pod's address "
        "(0.0.0.0 in the pod, reached through the chart's NetworkPolicy)",
    )
    store: str = Field("rocksdb://", description="Faust table store; memory:// for unit tests")
    table_standby_replicas: int = Field(
        0, description="standby copies of each table partition on other workers (fast failover)"
    )
    consumer_session_timeout_ms: int = Field(
        6000,
        ge=1000,
        description="a worker that stops heartbeating is dropped from the group after this; its "
        "partitions move to the others. 6 s is the broker's group.min.session.timeout.ms; "
        "Faust's 60 s default kept a dead worker's partitions idle 62-64 s (measured)",
    )
    consumer_heartbeat_ms: int = Field(
        1000,
        ge=100,
        description="heartbeat interval: at most a third of the session timeout (Kafka's rule)",
    )
    group_instance_id: str | None = Field(
        None,
        description="static group membership (KIP-345): a stable id per pod (the chart sets the "
        "StatefulSet pod name). A restarted worker with the same id gets its partitions back "
        "without a rebalance; unset = dynamic membership. Two live workers must never share one",
    )
    input_transactional: bool = Field(
        False,
        description="gateways produce requests/outcomes in Kafka transactions: one offset per "
        "transaction marker then has no record. False = every input offset is a record, so any "
        "jump in the offsets read is a fetch race, never committed over (app.kafka.offsets)",
    )
    fetch_max_wait_ms: int = Field(
        10, description="longest the broker may hold a fetch (Faust hard-codes 1500 ms)"
    )
    gateway_partitioner: Literal["consistent_random", "murmur2_random"] = Field(
        "consistent_random",
        description="the partitioner of the gateways producing requests and outcomes keyed by "
        "card: librdkafka's default (consistent_random, CRC-32) or the Java client's "
        "(murmur2_random); backfill places card state by it (app.kafka.partitioning)",
    )
    producer_linger_ms: int = Field(
        2,
        ge=0,
        description="how long the producer may hold a message to batch it (decisions, changelogs, "
        "owner batches); see app.worker.app.producer_options for the measurement",
    )
    changelog_buffer: int = Field(
        5000, description="table changelog messages queued before streams pause (Faust: 100)"
    )
    log_level: str = "info"

    # --- input bounds (app.contracts.bounds, app.contracts.validate) ---------------------------
    event_time_clock: Literal["wall", "stream"] = Field(
        "wall",
        description="what a request's or outcome's event_time is held to: `wall`, this "
        "worker's clock (production: gateways run NTP), or `stream`, the newest event time "
        "the worker accepted on the partition advanced by the wall time since x "
        "event_time_stream_speed (the simulator harnesses, whose event times are far from "
        "the wall clock; they pass AUTHPILOT_EVENT_TIME_CLOCK=stream to their workers)",
    )
    event_time_max_ahead_s: float = Field(
        300.0,
        ge=0,
        description="a record further ahead of the clock than this is dead-lettered "
        "(invalid_field, event_time). 5 minutes: NTP keeps gateway clocks within "
        "milliseconds, so minutes ahead is a broken clock; and no more than the narrowest "
        "ring bucket (5 min), so an admitted record can never block or erase a window's "
        "history (app.contracts.bounds)",
    )
    event_time_max_behind_s: float = Field(
        7 * 86400.0,
        ge=0,
        description="a record further behind the clock than this is dead-lettered. 7 days: "
        "the input topics' retention, so every outcome the broker can still deliver (a "
        "worker catching up after an outage) is learned, and nothing older is",
    )
    event_time_stream_speed: float = Field(
        60.0,
        ge=0,
        description="stream clock only: simulated ms per wall ms, so the clock moves on "
        "from when its newest record was produced (60: the simulator's default speedup, "
        "app.harness.simulated)",
    )
    event_time_stream_resync: int = Field(
        32,
        ge=1,
        description="stream clock only: this many refused records in a row that agree with "
        "one another re-anchor the clock (the stream's first record was the outlier, or a "
        "simulation restarted from its start against a running worker)",
    )
    max_input_bytes: int = Field(
        65536,
        ge=1024,
        le=262144,
        description="a request or outcome whose key + value + headers exceed this is "
        "dead-lettered as oversized, before decoding. The largest valid request (64 "
        "candidates, every string at its bound in 4-byte characters) encodes to 19.5 KB; "
        "the dead-letter sink keeps up to 256 KB of a value, so this stays under that "
        "(le=262144): every accepted message is kept whole in its dead letter, and every "
        "output fits the producer's 1 MB limit",
    )

    # --- success-rate routing (the baseline and the no-model fallback) -----------------------
    sr_window: int = Field(
        125,
        description="outcomes per route x key remembered (Juspay's default bucket is 125; "
        "tune 100-2000: small reacts fast, large is less noisy)",
    )
    sr_min_samples: int = Field(
        20, description="a key level is trusted once it holds this many outcomes"
    )
    sr_prior: float = Field(0.8, description="success rate assumed for a route with no history")
    sr_explore: float = Field(0.05, description="share of traffic routed uniformly at random")
    sr_eliminate_below: float = Field(
        0.2, description="a route under this success rate is skipped unless all are"
    )
    ev_margin_bps: float = Field(
        2000.0,
        description="value of an approval as basis points of the amount: the merchant's gross "
        "margin on the sale (20% by default), what a false decline loses; EV routing and the "
        "retry engine weigh it against route fees and attempt costs",
    )
    ev_merchant_margin_bps: dict[str, float] = Field(
        default_factory=dict, description='per-merchant margins, JSON: {"m1": 180}'
    )
    ev_explore: float = Field(
        0.03,
        description="share of EV-routed traffic that explores (uniform over the eligible "
        "routes). It keeps the route windows the model reads and the online correction fed for "
        "routes the mean would not pick; measured (evaluate-policy steady, 3 seeds x 10,000): "
        "share of the oracle's first-attempt uplift 44% at 0, 69% at 0.03, 69% at 0.06, 63% at "
        "0.10",
    )
    ev_thompson_scale: float = Field(
        0.0,
        ge=0.0,
        le=3.0,
        description="EV traffic beyond ev_explore is split by probability matching on the online "
        "correction's posterior: each route gets its share of posterior draws in which it has "
        "the highest EV (exact propensity); this scales the draws' sd (1 = Thompson sampling, "
        "0 = always the mean's best). The sd is the segment dispersion's (app.routing."
        "correction): 0 unless some candidate's segment is off its route. Default 0 by "
        "measurement (evaluate-policy, 3 seeds x 10,000 payments): steady share of the oracle's "
        "uplift 66% at 0, 67% at 1 (with a fixed-width prior 1 had cost 67% -> 40%); the French "
        "issuer shift reached 80% on the new route after 890, 263, 699 segment outcomes at 0 and "
        "705, 654, 670 at 1, but kept 60% of the oracle's uplift after it at 0 and 51% at 1",
    )
    # --- online correction of the model (app.routing.correction) ------------------------------
    correction_enabled: bool = Field(
        True, description="correct the model's p per route x segment from recent outcomes"
    )
    correction_half_life_outcomes: float = Field(
        300.0,
        gt=0,
        description="residual evidence of a route x segment key halves every this many of its "
        "outcomes",
    )
    correction_half_life_ms: float = Field(
        6 * 3_600_000.0,
        gt=0,
        description="and halves every this much event time, so a key nobody routes to fades "
        "back to its parent level",
    )
    correction_prior_route: float = Field(
        50.0,
        gt=0,
        description="pseudo-outcomes at the model's own rate behind a route's offset",
    )
    correction_prior_segment: float = Field(
        20.0,
        gt=0,
        description="pseudo-outcomes at the parent level's corrected rate behind a network x "
        "issuer country or BIN offset",
    )
    correction_max_offset: float = Field(
        4.0, gt=0, description="the offset is clamped to +- this many logits"
    )
    correction_dispersion_z: float = Field(
        2.0,
        gt=0,
        description="a route x segment (issuer country) whose residual is off its "
        "route's by more than this many standard errors sets the request's segment dispersion: "
        "the width posterior exploration draws every candidate's segment offset from "
        "(app.routing.correction)",
    )
    ev_eliminate_below: float = Field(
        0.05, description="routes with p_approve under this are skipped unless all are"
    )
    ev_latency_budget_ms: float = Field(
        1000.0, description="a route whose recent mean latency is over this is penalized"
    )
    ev_latency_penalty: float = Field(
        0.5,
        description="share of an approval's value charged at twice the latency budget "
        "(linear from the budget, capped)",
    )
    visa_rules_variant: Literal["current", "2026-04"] = Field(
        "current", description="Visa reattempt regime: before or after April 2026"
    )
    retry_attempt_cost_minor: float = Field(
        10.0,
        ge=0,
        description="fee of one more attempt when the worker does not know the declined "
        "attempt's route fee (its decision was made before a rebalance); otherwise the "
        "route's fee_minor from the request is the cost. Minor units (the network's fees for "
        "a declined retry come from the rules data: decline_fees)",
    )
    retry_attempt_surcharge_minor: float = Field(
        0.0,
        ge=0,
        description="the operator's own cost of one more attempt on top of the route's fee "
        "(support load, customer friction), minor units: raising it trades recovered value "
        "for fewer attempts (evaluate-policy's router+retrier@cost draws that curve)",
    )
    # --- which policies run (names: app.routing.registry, app.retry.registry) -----------------
    routing_policy: RoutingPolicyName = Field(
        "expected_value", description="routing policy when no experiment arms are set"
    )
    best_routes: dict[str, str] = Field(
        default_factory=dict,
        description='merchant -> route for best_single_route, JSON: {"m1": "acq-de"}; a '
        "merchant missing here gets its first candidate",
    )
    oracle_scenario: str | None = Field(
        None, description="simulator scenario whose truth the oracle policy reads (demos only)"
    )
    retry_recovery_file: Path | None = Field(
        None,
        description="recovery table for the retry engine (`authpilot fit-retry`); unset = the "
        "bundled priors (app/data/retry_recovery.json)",
    )
    retry_explore: float = Field(
        0.03,
        ge=0.0,
        lt=1.0,
        description="share of the retry engine's scheduled retries sent at a time drawn "
        "uniformly from the worthwhile candidates, with its propensity in the RetryDecision: "
        "the retry model's training history then holds the waits the engine would not choose",
    )
    retry_pay_calendar: Path | None = Field(
        None,
        description="pay calendar for the retry engine's payday candidates: JSON {issuer "
        "country: [days of month]} (e.g. app/data/pay_calendars/europe_monthly.json); unset = "
        "the recovery table's paydays (1st and 15th) for every country",
    )
    retry_policy: RetryPolicyName = Field(
        "engine", description="retry engine, or the +1d/+3d/+7d rule-aware fixed schedule"
    )
    experiment_arms: list[dict[str, Any]] = Field(
        default_factory=list,
        description='A/B arms, JSON: [{"name": "control", "pct": 50, "policy": "success_rate"}, '
        '{"name": "ev", "pct": 50, "policy": "expected_value", "model": "<challenger name>"}]; '
        "payments are split by hash(payment_id) mod 100; arms + holdout must add up to 100",
    )
    experiment_holdout_pct: int = Field(
        0, ge=0, le=100, description="share of payments kept out of every arm (holdout)"
    )
    holdout_policy: RoutingPolicyName = Field(
        "best_single_route", description="what the holdout gets: no optimization"
    )
    drift_monitor: bool = Field(
        True, description="run the drift detectors: alerts, route demotion, model fallback"
    )
    model_poll_seconds: float = Field(
        1.0, description="how often a worker checks the model registry for a promotion"
    )
    outcome_dedupe_hours: float = Field(
        168.0,
        gt=0,
        description="an outcome whose request_id the card saw within this many hours of its "
        "newest outcome is a duplicate: no state change, no RetryDecision (7 days: the "
        "topics' retention, so any redelivery the broker can still serve is caught)",
    )
    outcome_dedupe_per_card: int = Field(
        64,
        ge=1,
        description="outcome ids kept per card (16 bytes each). Measured on the simulator's "
        "steady world, 100k outcomes: at most 32 outcomes of one card in 7 days, p99.9 15",
    )
    decided_per_partition: int = Field(
        20_000,
        ge=100,
        description="decisions remembered per request partition (request_id -> the decision "
        "sent), so a replayed request is not decided again and a resent one gets the same "
        "answer (app.state.decided). Only uncommitted requests are replayed: Faust commits every "
        "2.8 s, i.e. ~1,400 requests per partition at 500/s; 20,000 is ~8 MB per partition",
    )
    request_max_age_ms: int = Field(
        300_000,
        ge=1000,
        description="a request whose Kafka timestamp is older than this when the worker reads it "
        "is counted (authpilot_stale_requests_total) and not decided: the gateway has long timed "
        "out. 5 min covers a worker's restart and a failover with a wide margin",
    )
    state_read_cache: int = Field(
        200_000,
        ge=1,
        description="published keys (feature rings, success-rate snapshots) each worker keeps "
        "in memory per GlobalTable, kept current by the changelog (app.state.published)",
    )
    state_checkpoint_ms: int = Field(
        # Measured (capacity bench, closed loop, same machine): 250 ms and 1000 ms drain at the
        # same rate (680 / 672 payments/s), but at 50% of that load 250 ms gave p50 60 ms /
        # p99 433 ms and 1000 ms p50 21 ms / p99 92 ms: fewer, larger checkpoints stall less.
        1000,
        ge=10,
        description="staged state is written (once per key: RocksDB + changelog) and published "
        "to every worker's GlobalTables at this interval and before every offset commit; "
        "readers on other workers see owned keys up to about two intervals late (outcome "
        "agent, then owner). A crash loses nothing and doubles nothing (app.state.checkpoint)",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built once."""
    return Settings()
