"""`authpilot worker` as a subprocess, ready once its /readyz answers 200.

The demo, the end-to-end benchmark and the broker tests run the worker as Helm does, a real
process configured only through AUTHPILOT_* environment variables, so what they measure or
assert is the deployed worker, not an in-process copy sharing the caller's state.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from app.config import Settings
from app.kafka.connection import bootstrap_servers


class WorkerProcess:
    """One worker subprocess: `env` is its whole environment and must set AUTHPILOT_WEB_PORT."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.port = int(env["AUTHPILOT_WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> Self:
        """Launch the process (stdout and stderr appended to `log`) without waiting."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"], env=self.env, stdout=out, stderr=out
            )
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until /readyz answers 200 (its tables recovered, its agents running).

        Raises RuntimeError, with the log's tail, when the process exits first or `timeout`
        passes; a cold start on the local broker takes 10-30 s, 120 s covers a loaded machine.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with code {self.proc.returncode} before it was ready"
                    f"\n--- worker log ---\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"worker not ready on port {self.port} after {timeout:.0f}s"
            f"\n--- worker log ---\n{self.log_tail()}"
        )

    def start(self, timeout: float = 120) -> Self:
        """Spawn and wait until ready; a worker that never gets ready is stopped, not leaked."""
        self.spawn()
        try:
            self.wait_ready(timeout)
        except RuntimeError:
            self.stop(10)
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, so Faust commits offsets on the way out; SIGKILL after `timeout` seconds."""
        assert self.proc is not None, "worker was never started"
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> int:
        """SIGKILL: a crash, nothing committed on the way out."""
        assert self.proc is not None, "worker was never started"
        self.proc.kill()
        return self.proc.wait()

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def readiness(self) -> dict[str, Any]:
        """The /readyz body (200 or 503: the checks say which are false)."""
        import json
        import urllib.error

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:  # 503: not ready, the body names why
            return dict(json.loads(e.read()))

    def metrics(self) -> str:
        """The Prometheus exposition text from /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def metric(self, prefix: str) -> float:
        """The value of the first exported sample starting with `prefix` (0 if none)."""
        for line in self.metrics().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.running:
            self.stop()


@contextlib.contextmanager
def running_worker(s: Settings, name: str) -> Iterator[WorkerProcess]:
    """A worker for `s`'s cluster and port (log var/<name>.log, tables var/<name>/), ready on
    entry, stopped on exit; the rest of its configuration is this process's environment. Its
    callers (the demo, the end-to-end bench) send simulated event times, so its event-time
    clock is the stream's unless the environment chooses (app.contracts.bounds)."""
    env = {**os.environ, "AUTHPILOT_DATA_DIR": str(Path(f"var/{name}").resolve())}
    env.setdefault("AUTHPILOT_EVENT_TIME_CLOCK", "stream")
    env["AUTHPILOT_KAFKA_BOOTSTRAP"] = bootstrap_servers(s)
    env["AUTHPILOT_WEB_PORT"] = str(s.web_port)
    worker = WorkerProcess(env, Path(f"var/{name}.log")).spawn()
    try:
        print(f"worker pid {worker.pid}, log {worker.log}; waiting for it to be ready", flush=True)
        worker.wait_ready(120)
        print(f"worker ready; metrics on http://127.0.0.1:{s.web_port}/metrics", flush=True)
        yield worker
    finally:
        worker.stop(30)
