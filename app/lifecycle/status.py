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
    """(promotions by key, serving reports by worker): the control topic read to its end."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from app.kafka.connection import confluent_config

    c = Consumer({**confluent_config(s), "group.id": "authpilot-models-cli",
                  "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    promoted: dict[str, dict[str, Any]] = {}
    serving: dict[str, Serving] = {}
    now = time.time() * 1000
    try:
        try:
            lo, hi = c.get_watermark_offsets(TopicPartition(s.topic_control, 0), timeout=timeout)
        except KafkaException as exc:
            raise RuntimeError(f"cannot read {s.topic_control}: {exc}") from exc
        if hi <= lo:
            return promoted, serving
        c.assign([TopicPartition(s.topic_control, 0, lo)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    break
                raise RuntimeError(f"{s.topic_control}: {err}")
            key, value = m.key(), m.value()
            if key is None or value is None:
                continue
            try:
                rec = json.loads(value)
            except ValueError:
                continue
            k = key.decode()
            if is_promotion(k):
                promoted[k] = rec
            else:
                serving[k[len(SERVING_PREFIX) :]] = Serving(
                    dict(rec.get("models", {})),
                    dict(rec.get("refused", {})),
                    (now - float(rec.get("at", now))) / 1000,
                )
            if (m.offset() or 0) >= hi - 1:
                break
    finally:
        c.close()
    return promoted, serving
