"""The drift trigger of `authpilot retrain --if-alert`: did an alert that calls for a new model
fire since the last run?

Reads the alerts topic (Alert.avsc, written by the worker's drift monitor) from the offsets the
consumer group `<app_id>-retrain-alerts` committed last time, to its end, then commits the end:
an alert triggers one retrain, not one per schedule tick, and a CronJob pod keeps no state of
its own. The first run reads from the topic's beginning (retention: 7 days).
"""

from __future__ import annotations

from app.config import Settings

# MODEL_FALLBACK: the worker stopped using the model (its calibration or scores drifted);
# CALIBRATION_DRIFT and FEATURE_DRIFT: the world the model learnt moved (app.monitoring.health).
# Route demotions and score drift alone are the online layer's business, not a retrain's.
TRIGGERS = frozenset({"MODEL_FALLBACK", "CALIBRATION_DRIFT", "FEATURE_DRIFT"})


def group_id(s: Settings) -> str:
    return f"{s.app_id}-retrain-alerts"


def fired_since_last_run(s: Settings) -> list[str]:
    """'KIND subject: message' of every triggering alert since the group's committed offsets."""
    from confluent_kafka import Consumer, TopicPartition

    from app.contracts.codec import Codec
    from app.experiments.kafka_log import end_offsets, read_topic
    from app.kafka.connection import confluent_config

    conf = confluent_config(s)
    ends = end_offsets(conf, s.topic_alerts, optional=True)
    if not ends:
        return []
    c = Consumer({**conf, "group.id": group_id(s), "enable.auto.commit": False})
    try:
        committed = c.committed([TopicPartition(s.topic_alerts, p) for p in ends], timeout=15)
        start = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        got = read_topic(conf, s.topic_alerts, Codec(s).serde("Alert").decode, optional=True,
                         start=start or None)  # fmt: skip
        if got.end:
            c.commit(offsets=[TopicPartition(s.topic_alerts, p, o) for p, o in got.end.items()],
                     asynchronous=False)  # fmt: skip
    finally:
        c.close()
    return [f"{a['kind']} {a['subject']}: {a['message']}" for a in got.rows
            if a.get("kind") in TRIGGERS]  # fmt: skip
