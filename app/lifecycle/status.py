"""Which worker serves which model: reports on the control topic, read by `authpilot models`.

After every change of its model slots (a swap or a refusal) and once when it has read the
control topic, a worker writes {worker, models, refused, at} under the compacted key
`serving:<worker>` (app.models.roles.serving_key); promotions are every other key. A report
is a fact about the past: `authpilot models` shows its age, and a worker that died keeps its
last report until a new one with its id replaces it (the pod name, under static membership).
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.models.roles import SERVING_PREFIX, is_promotion, serving_key


def worker_id(s: Settings) -> str:
    """The pod name under static membership (the chart sets it), else host:web port."""
    return s.group_instance_id or f"{socket.gethostname()}:{s.web_port}"


def serving_record(worker: str, models: dict[str, str], refused: dict[str, str]) -> bytes:
    rec = {"worker": worker, "models": models, "refused": refused, "at": int(time.time() * 1000)}
    return json.dumps(rec).encode()


class StatusReporter:
    """One idempotent producer per worker; report() blocks (call it off the event loop)."""

    def __init__(self, s: Settings) -> None:
        self._s = s
        self.worker = worker_id(s)
        self._producer: Any = None

    def report(self, models: dict[str, str], refused: dict[str, str]) -> None:
        from confluent_kafka import Producer

        from app.kafka.connection import confluent_config

        if self._producer is None:
            self._producer = Producer({**confluent_config(self._s), "enable.idempotence": True})
        self._producer.produce(self._s.topic_control, key=serving_key(self.worker).encode(),
                               value=serving_record(self.worker, models, refused))  # fmt: skip
        self._producer.flush(10)


@dataclass(frozen=True)
class Serving:
    models: dict[str, str]  # role -> name/version
    refused: dict[str, str]  # role -> "name/version: reason"
    age_s: float


def read_serving(s: Settings, timeout: float = 15.0
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, Serving]]:  # fmt: skip
    """(promotions by key, serving reports by worker): the control topic read to its end by
    the workers' own reader (app.models.serving.registry.ControlWatcher)."""
    from app.models.serving.registry import ControlWatcher

    w = ControlWatcher(s).start()
    try:
        if not w.caught_up.wait(timeout):
            raise RuntimeError(f"not read to its end within {timeout:.0f} s (is Kafka up?)")
        latest = w.snapshot()
    finally:
        w.stop()
    now = time.time() * 1000
    promoted = {k: rec for k, rec in latest.items() if is_promotion(k)}
    serving = {
        k[len(SERVING_PREFIX) :]: Serving(
            dict(rec.get("models", {})),
            dict(rec.get("refused", {})),
            (now - float(rec.get("at", now))) / 1000,
        )
        for k, rec in latest.items()
        if not is_promotion(k)
    }
    return promoted, serving
