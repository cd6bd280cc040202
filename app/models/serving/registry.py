"""Model registry on a compacted Kafka topic, and the worker side that hot-swaps models.

`authpilot promote NAME VERSION --role champion|challenger|retry` writes {name, version, role}
to the control topic under the key "champion", "challenger:<name>" or "retry" (the recovery
model the retry step prices retry times with, app.retry.recovery_model, verified against its
own feature hash); compaction keeps the latest per key, so a new worker learns the current
models by reading the topic from the start. Every worker reads the whole topic itself (a plain
assigned consumer, no consumer group: each worker must see every promotion), loads the
artifact from AUTHPILOT_MODEL_DIR off the event loop (or, when the directory is not there and
the record names a registry source, from the MLflow artifact store into
AUTHPILOT_MODEL_CACHE_DIR), verifies it (checksum, feature hash, warm-up) and swaps one
reference: a request (or a decline) is scored entirely by the old or entirely by the new
model, never dropped. A refused artifact leaves the old model serving, raises
authpilot_model_load_failures_total{reason} and logs why.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from app.config import Settings
from app.kafka.connection import confluent_config, worker_client_config
from app.models.artifact import MANIFEST, ModelRejected
from app.models.roles import control_key, is_promotion
from app.models.serving.scoring import CompiledModel
from app.monitoring.metrics import MODEL_INFO, MODEL_LOAD_FAILURES

if TYPE_CHECKING:
    from app.retry.recovery_model import CompiledRecovery

log = logging.getLogger(__name__)


def promote(s: Settings, name: str, version: str, role: str,
            registry: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Publish a promotion to the control topic; returns the record written. `registry`: the
    MLflow version and artifact source (app.lifecycle.registry.record_fields), which a worker
    without the directory downloads it from."""
    rec = {"name": name, "version": version, "role": role, **(registry or {})}
    return _publish(s, control_key(name, role), rec)


def retire(s: Settings, name: str) -> dict[str, Any]:
    """Stop shadowing model `name`'s challenger: a record with `retired` under its key (the
    key stays, compaction keeps this record, and a new worker learns there is none)."""
    rec = {"name": name, "version": None, "role": "challenger", "retired": True}
    return _publish(s, control_key(name, "challenger"), rec)


def _publish(s: Settings, key: str, rec: dict[str, Any]) -> dict[str, Any]:
    rec = {**rec, "promoted_at": int(time.time() * 1000)}
    p = Producer({**confluent_config(s), "enable.idempotence": True})
    p.produce(s.topic_control, key=key.encode(), value=json.dumps(rec).encode())
    if p.flush(30) != 0:
        raise RuntimeError(f"control record {key} not acknowledged by Kafka within 30 s")
    return rec


class ControlWatcher:
    """Reads the compacted control topic from the beginning, forever, in a daemon thread."""

    def __init__(self, s: Settings) -> None:
        self._s = s
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self.caught_up = threading.Event()  # read to the end once: the snapshot is complete
        self._thread = threading.Thread(target=self._run, name="control-watcher", daemon=True)

    def start(self) -> ControlWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._latest)

    def _run(self) -> None:
        c = Consumer({**worker_client_config(self._s), "group.id": "unused-assigned-only",
                      "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
        c.assign([TopicPartition(self._s.topic_control, 0, OFFSET_BEGINNING)])
        while not self._stop.is_set():
            m = c.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.caught_up.set()
                continue
            key, value = m.key(), m.value()
            try:  # a record without key or value (a tombstone) is logged, never a dead thread
                if key is None or value is None:
                    raise ValueError("no key or value")
                rec = json.loads(value)
                with self._lock:
                    self._latest[key.decode()] = rec
            except ValueError:
                log.error("unreadable control record at offset %s", m.offset())
        c.close()


class ModelSlots:
    """The models a worker serves; the score agent reads `champion` once per request, the retry
    step `retry` once per decline (None: the recovery table prices retries)."""

    def __init__(self, model_dir: Path, feature_hash: str,
                 fetch: Callable[[str, str, str], Path] | None = None) -> None:  # fmt: skip
        self.model_dir = model_dir
        self.feature_hash = feature_hash
        # (source URI, name, version) -> a local copy: app.lifecycle.registry.local_copy
        self._fetch = fetch
        self.champion: CompiledModel | None = None
        self.challengers: dict[str, CompiledModel] = {}
        self.retry: CompiledRecovery | None = None
        self._seen: dict[str, tuple[Any, ...]] = {}  # key -> (name, version) last attempted
        self.refused: dict[str, str] = {}  # key -> "name/version: reason" of its last refusal

    def pending(self, registry: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """Promotions not yet attempted (a refused one is not retried until re-promoted)."""
        out = []
        for key, rec in registry.items():
            if not is_promotion(key):
                continue  # a worker's serving report
            ident = (rec["name"], rec["version"], rec.get("promoted_at"))
            if self._seen.get(key) != ident:
                out.append((key, rec))
        return out

    def champion_missing(self, registry: dict[str, dict[str, Any]]) -> bool:
        """A champion is promoted but this worker does not serve it (not loaded yet, or refused
        with no champion to fall back to): /readyz says not ready, so a rollout stops here."""
        return self._missing(registry, "champion", self.champion)

    def retry_missing(self, registry: dict[str, dict[str, Any]]) -> bool:
        """The same rule for the retry model (a refused first one leaves the table serving, and
        the worker not ready: the rollout of a bad artifact stops on its first pod)."""
        return self._missing(registry, "retry", self.retry)

    def _missing(self, registry: dict[str, dict[str, Any]], key: str,
                 served: CompiledModel | CompiledRecovery | None) -> bool:  # fmt: skip
        rec = registry.get(key)
        if rec is None:
            return False
        return served is None or (
            (served.name, served.version) != (rec["name"], rec["version"])
            and self._seen.get(key) != (rec["name"], rec["version"], rec.get("promoted_at"))
        )

    def load(self, rec: dict[str, Any]) -> CompiledModel | CompiledRecovery | None:
        """Load and verify (blocking: run it off the event loop). A directory missing here is
        downloaded first from the record's registry source, then verified the same way. None
        for a retired challenger (nothing to load)."""
        if rec.get("retired"):
            return None
        path = self.model_dir / rec["name"] / rec["version"]
        source = rec.get("source")
        if not (path / MANIFEST).exists() and source and self._fetch is not None:
            try:
                path = self._fetch(str(source), rec["name"], rec["version"])
            except Exception as exc:  # a registry or network error: refused, old model serves
                raise ModelRejected("fetch", f"{source}: {exc}") from exc
            log.warning("downloaded %s/%s from %s", rec["name"], rec["version"], source)
        if rec["role"] == "retry":
            from app.retry.recovery_model import CompiledRecovery

            return CompiledRecovery(path)
        return CompiledModel(path, self.feature_hash)

    def install(self, key: str, rec: dict[str, Any],
                model: CompiledModel | CompiledRecovery | None,
                error: ModelRejected | None) -> None:  # fmt: skip
        """Swap in a loaded model, or record why it was refused (on the event loop thread)."""
        self._seen[key] = (rec["name"], rec["version"], rec.get("promoted_at"))
        role = rec["role"]
        if rec.get("retired"):
            gone = self.challengers.pop(rec["name"], None)
            self.refused.pop(key, None)
            if gone is not None:
                MODEL_INFO.labels(gone.name, gone.version, role).set(0)
                log.warning("stopped shadowing %s (challenger retired)", gone.label)
            return
        if error is not None or model is None:
            reason = error.reason if error else "unknown"
            MODEL_LOAD_FAILURES.labels(reason).inc()
            self.refused[key] = f"{rec['name']}/{rec['version']}: {reason}"
            log.error("refused %s/%s as %s: %s; the current model keeps serving",
                      rec["name"], rec["version"], role, error)  # fmt: skip
            return
        self.refused.pop(key, None)
        old: CompiledModel | CompiledRecovery | None
        # load() chose the class by role: one reference assignment per slot, the swap is atomic
        if role == "retry":
            old, self.retry = self.retry, cast("CompiledRecovery", model)
        elif role == "champion":
            old, self.champion = self.champion, cast(CompiledModel, model)
        else:
            old = self.challengers.get(rec["name"])
            self.challengers[rec["name"]] = cast(CompiledModel, model)
        if old is not None:
            MODEL_INFO.labels(old.name, old.version, role).set(0)
        MODEL_INFO.labels(model.name, model.version, role).set(1)
        log.warning("now serving %s as %s", model.label, role)

    def serving(self) -> dict[str, str]:
        """role (challenger: challenger:<name>) -> name/version this worker serves now."""
        out = {"champion": self.champion.label} if self.champion is not None else {}
        out.update({f"challenger:{n}": m.label for n, m in self.challengers.items()})
        if self.retry is not None:
            out["retry"] = self.retry.label
        return out
