"""Create the topics authpilot reads and writes, with the partition counts its tables require.

Faust only creates its internal topics (changelogs, repartitions); source and sink topics are
created here, before a worker starts, so that a table's changelog and its source topic agree on
partitions (Faust refuses to run otherwise) and a misconfigured cluster fails with a clear error.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from app.config import Settings
from app.kafka.connection import confluent_config


class TopicError(RuntimeError):
    """Topics exist with a shape authpilot cannot run on."""


def topic_specs(s: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> topic config, for every topic authpilot owns outside Faust."""
    week = str(7 * 24 * 3600 * 1000)
    return {
        s.topic_requests: {"retention.ms": week},
        s.topic_outcomes: {"retention.ms": week},
        s.topic_decisions: {"retention.ms": week},
        s.topic_retry_decisions: {"retention.ms": week},
        s.topic_shadow: {"retention.ms": week},
        s.topic_alerts: {"retention.ms": week},
        # Dead letters are kept a month: someone has to look at them and replay.
        s.topic_dead_letter: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        # The control topic names the champion/challenger models: latest value per key wins.
        s.topic_control: {"cleanup.policy": "compact"},
    }


def ensure_topics(s: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics (idempotent); returns the names created."""
    admin = AdminClient({**confluent_config(s)})  # a copy typed as its stub wants
    md = admin.list_topics(timeout=timeout)
    specs = topic_specs(s)
    # Decisions and retry decisions go to their input's partition number (app.state.decided).
    partitioned = {s.topic_requests, s.topic_outcomes, s.topic_decisions, s.topic_retry_decisions}
    for name in partitioned & set(md.topics):
        have = len(md.topics[name].partitions)
        if have != s.partitions:
            raise TopicError(
                f"topic {name} has {have} partitions but AUTHPILOT_PARTITIONS={s.partitions}; "
                "set AUTHPILOT_PARTITIONS to match (tables must be co-partitioned with it)"
            )
    new = [
        NewTopic(
            name,
            num_partitions=1 if name == s.topic_control else s.partitions,
            replication_factor=s.replication_factor,
            config=cfg,
        )
        for name, cfg in specs.items()
        if name not in md.topics
    ]
    if not new:
        return []
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result()
        except Exception as exc:  # a concurrent creator is fine, anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopicError(f"could not create {name}: {exc}") from exc
    return [t.topic for t in new]
