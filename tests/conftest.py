"""Shared fixtures: one real Kafka broker per test session, workers as real subprocesses.

The broker is the project's own (app.kafka.local_broker: Maven-resolved jars, KRaft mode,
127.0.0.1).
If it cannot start, every test that needs it ERRORS: nothing is skipped.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.harness.process import WorkerProcess

TEST_KAFKA_PORT = int(os.environ.get("AUTHPILOT_TEST_KAFKA_PORT", "29092"))


@pytest.fixture(autouse=True)
def _fresh_process_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test reads AUTHPILOT_* as it set them: get_settings() is cached per process, and
    code deep in a call (the ring kernel's build dir, a CLI command) would otherwise hand a
    test the settings an earlier test's environment produced. A CLI command that tracks to
    MLflow writes to the test's own embedded store, never the checkout's var/mlflow."""
    from app.config import get_settings

    monkeypatch.setenv("AUTHPILOT_MLFLOW_DIR", str(tmp_path / "mlflow"))
    monkeypatch.setenv("AUTHPILOT_MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A fresh local broker for the session, or the cluster AUTHPILOT_KAFKA_BOOTSTRAP names."""
    if os.environ.get("AUTHPILOT_KAFKA_BOOTSTRAP"):
        yield os.environ["AUTHPILOT_KAFKA_BOOTSTRAP"]
        return
    from app.kafka import local_broker as kafka_local

    broker = kafka_local.LocalBroker.from_settings(
        Settings(kafka_port=TEST_KAFKA_PORT, kafka_controller_port=TEST_KAFKA_PORT + 1)
    )
    kafka_local.reset(broker)  # a clean cluster: no topics or offsets from an earlier session
    bootstrap = kafka_local.start(broker, timeout=120)
    yield bootstrap
    # the next session resets the cluster anyway: a controlled shutdown is not worth waiting
    # for (SIGTERM took the whole 30 s default before the SIGKILL, measured at session end)
    kafka_local.stop(broker, timeout=5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    """Environment of an isolated authpilot deployment: unique app id and topic names."""
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPILOT_")}
    env.update(
        {
            "AUTHPILOT_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "AUTHPILOT_APP_ID": f"t{tag}",
            "AUTHPILOT_WEB_PORT": str(_free_port()),
            "AUTHPILOT_DATA_DIR": str(tmp_path / "data"),
            "AUTHPILOT_PARTITIONS": "2",
            "AUTHPILOT_LOG_LEVEL": "info",
            # the tests' event times are fixed dates (2023, 2026) or simulated: the stream clock,
            # and since many tests produce a whole timeline at once (a 9-day sample log with
            # 2-hour gaps, requests 10 minutes apart), records up to a day ahead of the newest
            # (tests/integration/test_bounds_kafka.py runs the production defaults)
            "AUTHPILOT_EVENT_TIME_CLOCK": "stream",
            "AUTHPILOT_EVENT_TIME_MAX_AHEAD_S": "86400",
        }
    )
    for name in ("requests", "outcomes", "decisions", "retry_decisions", "shadow", "alerts",
                 "control", "dead_letter"):  # fmt: skip
        env[f"AUTHPILOT_TOPIC_{name.upper()}"] = f"t{tag}.{name}"
    return env


@pytest.fixture
def settings_for(worker_env: dict[str, str]) -> Settings:
    """Settings equal to what the worker subprocess sees."""
    return Settings(**{k[len("AUTHPILOT_") :].lower(): v for k, v in worker_env.items()
                       if k.startswith("AUTHPILOT_")})  # fmt: skip


@pytest.fixture
def worker(
    worker_env: dict[str, str], settings_for: Settings, tmp_path: Path
) -> Iterator[WorkerProcess]:
    """A started worker (topics created first); stopped at teardown."""
    from app.kafka.topics import ensure_topics

    ensure_topics(settings_for)
    w = WorkerProcess(worker_env, tmp_path / "worker.log")
    w.start()
    yield w
    if w.running:
        w.stop()


def wait_until(cond: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())
