"""The retrain pipeline closed loop on the broker: a champion trained before an issuer shift
serves simulated traffic through the shift; `retrain --from-topics --history` exports what the
worker logged, trains on it with the history, passes gate 1 and becomes challenger; the worker
downloads it from the MLflow store and shadows it; after more traffic `retrain --stage shadow`
passes gate 2 and makes it champion; the worker swaps and stops shadowing.

Slow suite (`make test-slow`, ~5 min): a 40k-attempt history, two trainings, ~3 min of traffic.
Prints the gate reports (the closing note of issue 18 quotes them)."""

from __future__ import annotations

import pytest

from app.evaluation.prepare import MODEL_NAME, prepare
from app.harness.loadgen import LoadGenerator
from app.harness.simulated import SimulatedTraffic
from app.lifecycle import registry
from app.lifecycle.pipeline import RetrainOptions, _promote, retrain
from tests.conftest import WorkerProcess, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SHIFT_DAY = 14.0  # app/data/scenarios/issuer_shift.json


def _role(w: WorkerProcess, role: str, version: str) -> float:
    return w.metric(
        f'authpilot_model_info{{name="{MODEL_NAME}",role="{role}",version="{version}"}}'
    )


def test_drift_retrain_shadow_then_champion(worker_env, settings_for, tmp_path):
    from app.kafka.topics import ensure_topics

    p = prepare("issuer_shift", tmp_path / "eval", history_days=13.5, attempts=40_000, seed=5,
                say=print)  # fmt: skip
    root = p.model_dir.parent.parent
    store = {"AUTHPILOT_MLFLOW_DIR": str(tmp_path / "mlflow"),
             "AUTHPILOT_MODEL_CACHE_DIR": str(tmp_path / "worker-cache")}  # fmt: skip
    env = dict(worker_env, AUTHPILOT_MODEL_DIR=str(root), **store)
    s = settings_for.model_copy(update={"model_dir": tmp_path / "retrain-models",
                                        "model_cache_dir": tmp_path / "retrain-cache",
                                        "mlflow_dir": tmp_path / "mlflow"})  # fmt: skip
    ensure_topics(s)
    registry.register(s, p.model_dir)
    _promote(s, MODEL_NAME, "v1", "champion")
    w = WorkerProcess(env, tmp_path / "worker.log").start()
    world = SimulatedTraffic("issuer_shift", seed=11, speedup=400, start_day=SHIFT_DAY - 0.25)
    opts = RetrainOptions(from_topics=True, history=(p.log_dir,), work=tmp_path / "work",
                          name=MODEL_NAME, rounds=400, stage="train", version="v2")  # fmt: skip
    try:
        assert wait_until(lambda: _role(w, "champion", "v1") == 1.0, 60), w.log_tail()
        # ~6 simulated hours before the shift, ~5 after it: ~15,000 payments
        stats = LoadGenerator(s, world, rate=150, duration=100).run(show=False)
        assert stats.decided > 10_000, stats
        first = retrain(s, opts)
        print(first.summary)
        assert first.ok and first.action == "challenger", first.summary
        assert wait_until(lambda: _role(w, "challenger", "v2") == 1.0, 60), w.log_tail()
        assert (tmp_path / "worker-cache" / MODEL_NAME / "v2" / "manifest.json").exists()
        LoadGenerator(s, world, rate=150, duration=40).run(show=False)  # the shadow window
        second = retrain(s, RetrainOptions(work=tmp_path / "work", name=MODEL_NAME,
                                           stage="shadow"))  # fmt: skip
        print(second.summary)
        assert second.ok and second.action == "champion", second.summary
        assert wait_until(lambda: _role(w, "champion", "v2") == 1.0, 60), w.log_tail()
        assert wait_until(lambda: _role(w, "challenger", "v2") == 0.0, 30), "still shadowing"
        assert registry.by_alias(s, MODEL_NAME, "champion").version == "v2"
        assert registry.by_alias(s, MODEL_NAME, "challenger") is None
    finally:
        w.stop()
