"""The drift trigger of `authpilot retrain --if-alert`: did an alert that calls for a new model
fire since the last run?

Reads the alerts topic (Alert.avsc, written by the worker's drift monitor) from the offsets the
previous run stopped at, kept in a small JSON file beside the pipeline's work folder, to its
end. The offsets are saved after the read whatever it found, so an alert triggers one retrain,
not one per schedule tick; the first run starts at the topic's beginning (retention: 7 days).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.config import Settings

# MODEL_FALLBACK: the worker stopped using the model (its calibration or scores drifted);
# CALIBRATION_DRIFT and FEATURE_DRIFT: the world the model learnt moved (app.monitoring.health).
# Route demotions and score drift alone are the online layer's business, not a retrain's.
TRIGGERS = frozenset({"MODEL_FALLBACK", "CALIBRATION_DRIFT", "FEATURE_DRIFT"})


def fired_since_last_run(s: Settings, state: Path) -> list[str]:
    """'KIND subject: message' of every triggering alert since the offsets saved in state."""
    from app.contracts.codec import Codec
    from app.experiments.kafka_log import read_topic
    from app.kafka.connection import confluent_config

    start = None
    if state.exists():
        start = {int(k): int(v) for k, v in json.loads(state.read_text()).items()}
    got = read_topic(confluent_config(s), s.topic_alerts, Codec(s).serde("Alert").decode,
                     optional=True, start=start)  # fmt: skip
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(p): o for p, o in {**(start or {}), **got.end}.items()}))
    os.replace(tmp, state)
    return [f"{a['kind']} {a['subject']}: {a['message']}" for a in got.rows
            if a.get("kind") in TRIGGERS]  # fmt: skip
