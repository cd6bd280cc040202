"""The model lifecycle against the real thing: a `mlflow server` subprocess (sqlite store,
artifacts served over HTTP) and the broker. Register -> promote by alias -> a worker with an
empty model directory downloads, verifies and serves it -> hot swap -> a retrain on a broken
training set is refused by its gate while the champion keeps serving."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.main import main as cli
from app.config import get_settings
from app.harness.sample import write_sample_log
from app.lifecycle import registry
from tests.conftest import WorkerProcess, _free_port, wait_until
from tests.modelkit import build_versions, sabotage_log

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 (the server's, closed at teardown)
    p = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return p.poll() is not None  # died: stop waiting, the assert below says so

    try:
        assert wait_until(healthy, 120, 0.5) and p.poll() is None, (
            root / "server.log"
        ).read_text()[-3000:]
        yield url
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


def _serving(w: WorkerProcess, version: str) -> bool:
    return (
        w.metric(f'authpilot_model_info{{name="router",role="champion",version="{version}"}}')
        == 1.0
    )


def test_register_promote_fetch_swap_and_a_refused_retrain(
    mlflow_server, worker_env, tmp_path, monkeypatch, capsys
):
    from app.kafka.topics import ensure_topics

    built = build_versions(tmp_path / "build", ("v1", "v2"))
    env = dict(worker_env, AUTHPILOT_MLFLOW_TRACKING_URI=mlflow_server)
    for k, v in env.items():  # this process's CLI sees the worker's deployment
        if k.startswith("AUTHPILOT_"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("AUTHPILOT_MODEL_DIR", str(tmp_path / "cli-models"))
    get_settings.cache_clear()
    s = get_settings()
    ensure_topics(s)
    for v in ("v1", "v2"):
        registry.register(s, built / "router" / v)
    cache = tmp_path / "worker-cache"  # its model dir is empty: it must download from the server
    w = WorkerProcess(
        dict(
            env, AUTHPILOT_MODEL_DIR=str(tmp_path / "empty"), AUTHPILOT_MODEL_CACHE_DIR=str(cache)
        ),
        tmp_path / "worker.log",
    )
    w.start()
    try:
        assert cli(["promote", "router", "v1", "--role", "champion"]) == 0
        assert "alias @champion" in capsys.readouterr().out
        assert wait_until(lambda: _serving(w, "v1"), 60), w.log_tail()
        assert (cache / "router" / "v1" / "manifest.json").exists()
        assert "downloaded router/v1 from mlflow-artifacts:" in w.log_tail(20000)
        assert cli(["promote", "router", "v2"]) == 0
        assert wait_until(lambda: _serving(w, "v2") and not _serving(w, "v1"), 60), w.log_tail()
        assert registry.by_alias(s, "router", "champion").version == "v2"

        # a retrain on a broken training set: refused by gate 1, nothing moves
        log = write_sample_log(tmp_path / "log", n=3000, seed=4)  # the log v1/v2 learnt from
        bad = sabotage_log(log, tmp_path / "bad", until_fraction_ms(log, 0.85))
        code = cli(["retrain", "--log", str(bad), "--work", str(tmp_path / "work"),
                    "--rounds", "60", "--stage", "train"])  # fmt: skip
        out = capsys.readouterr().out
        assert code == 4, out
        assert "refused router/" in out and "REFUSE" in out
        assert registry.by_alias(s, "router", "champion").version == "v2"
        assert registry.by_alias(s, "router", "challenger") is None
        assert _serving(w, "v2")

        assert wait_until(lambda: "router/v2" in _models_listing(capsys), 30)
    finally:
        w.stop()


def until_fraction_ms(log: Path, q: float) -> int:
    import numpy as np
    import pyarrow.parquet as pq

    t = pq.read_table(log / "requests.parquet", columns=["event_time"]).column(0).to_numpy()
    return int(np.quantile(t, q))


def _models_listing(capsys) -> str:
    """`authpilot models`: the registry and the workers' serving reports."""
    assert cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "@champion" in out
    return out.split("workers (last report):", 1)[-1]
