"""MLflow tracking: every training run, its metrics, report, plots and artifacts, in one store.

Default store: an embedded one under AUTHPILOT_MLFLOW_DIR (var/mlflow): a sqlite database for
runs and the model registry, a folder for artifacts; nothing to start. Setting
AUTHPILOT_MLFLOW_TRACKING_URI (http://mlflow:5000) sends the same calls to a server, whose
artifact store (--serve-artifacts) then holds the artifacts. One experiment per model name
(`authpilot-router`, `authpilot-retry`), plus `authpilot-retrain` for the pipeline's runs.

mlflow is imported inside the functions: it costs ~1.5 s of import, which `authpilot --help`,
the worker's start and the tests that do not track should not pay.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
EXPERIMENT_PREFIX = "authpilot-"


@dataclass(frozen=True)
class Store:
    """Where runs and the registry live: the URI MLflow is given, and for the embedded store the
    artifact folder new experiments are created with (a server chooses its own)."""

    uri: str
    artifact_root: Path | None

    @property
    def embedded(self) -> bool:
        return self.artifact_root is not None

    def describe(self) -> str:
        if self.artifact_root is None:
            return self.uri
        return f"{self.uri} (artifacts {self.artifact_root})"

    def ui_command(self) -> str:
        """How a user opens the UI on this store (README, CLI output)."""
        if self.artifact_root is None:
            return f"open {self.uri}"
        return (f"mlflow ui --backend-store-uri {self.uri} "
                f"--default-artifact-root {self.artifact_root.as_uri()}")  # fmt: skip


def store_of(s: Settings) -> Store:
    if s.mlflow_tracking_uri:
        return Store(s.mlflow_tracking_uri, None)
    root = s.mlflow_dir.resolve()
    return Store(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")


def client(s: Settings) -> MlflowClient:
    """A client on the configured store (the embedded one's folder is created on first use)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # mlflow probes git; none in a pod
    from mlflow import MlflowClient

    st = store_of(s)
    if st.artifact_root is not None:
        st.artifact_root.mkdir(parents=True, exist_ok=True)
    for name in ("mlflow", "alembic"):  # schema migrations log a dozen INFO lines per new store
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=st.uri, registry_uri=st.uri)


def experiment_id(c: MlflowClient, s: Settings, name: str) -> str:
    """The experiment `authpilot-<name>`, created on first use."""
    full = EXPERIMENT_PREFIX + name
    exp = c.get_experiment_by_name(full)
    if exp is not None:
        return str(exp.experiment_id)
    st = store_of(s)
    loc = (st.artifact_root / full).as_uri() if st.artifact_root is not None else None
    return str(c.create_experiment(full, artifact_location=loc))


def flatten(prefix: str, value: Any, out: dict[str, float] | None = None) -> dict[str, float]:
    """Nested dicts of numbers as MLflow metric keys: {"test": {"model": {"auc": .8}}} ->
    {"test.model.auc": .8}. Non-numbers and non-finite numbers are left out (MLflow refuses
    NaN in some stores); keys keep only characters MLflow accepts."""
    out = {} if out is None else out
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(f"{prefix}.{_key(str(k))}" if prefix else _key(str(k)), v, out)
    elif isinstance(value, int | float) and math.isfinite(float(value)):  # bools are ints
        out[prefix] = float(value)
    return out


def _key(k: str) -> str:
    """ "model (calibrated)" -> "model_calibrated": runs of other characters become one "_"."""
    return re.sub(r"[^A-Za-z0-9_\-.]+", "_", k).strip("_")


@dataclass(frozen=True)
class RunRef:
    run_id: str
    experiment_id: str
    artifact_uri: str


@contextmanager
def run(
    s: Settings, experiment: str, run_name: str, tags: Mapping[str, str] | None = None
) -> Iterator[tuple[MlflowClient, RunRef]]:
    """A run that ends FINISHED when the block completes and FAILED when it raises."""
    c = client(s)
    eid = experiment_id(c, s, experiment)
    r = c.create_run(eid, run_name=run_name, tags=dict(tags or {}))
    ref = RunRef(r.info.run_id, eid, str(r.info.artifact_uri))
    try:
        yield c, ref
    except BaseException:
        c.set_terminated(ref.run_id, "FAILED")
        raise
    c.set_terminated(ref.run_id, "FINISHED")


def log_all(c: MlflowClient, run_id: str, params: Mapping[str, Any] | None = None,
            metrics: Mapping[str, float] | None = None,
            tags: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Params, metrics and tags in one batch call each (one HTTP request, not one per key)."""
    from mlflow.entities import Metric, Param, RunTag

    now = _now_ms()
    ps = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    ms = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
    ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    # The REST API's limits per call: 1,000 metrics, 100 params, 100 tags.
    for i in range(max(-(-len(ms) // 1000), -(-len(ps) // 100), -(-len(ts) // 100))):
        c.log_batch(
            run_id,
            metrics=ms[i * 1000 : (i + 1) * 1000],
            params=ps[i * 100 : (i + 1) * 100],
            tags=ts[i * 100 : (i + 1) * 100],
        )


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def log_train_dir(s: Settings, train_dir: Path, kind: str = "router") -> RunRef:
    """Log an `authpilot train --out` directory as a run of experiment authpilot-<name>:
    parameters, the training and test windows, every test metric (calibrated, raw, baseline,
    champion), per-segment metrics, the report, PNGs, calibration map and native model. Writes
    the run id into metrics.json, so `compile` adds the compiled artifact to the same run."""
    import json

    summary = json.loads((train_dir / "metrics.json").read_text())
    name, version = summary["name"], summary["version"]
    params = {k: summary[k] for k in ("name", "version", "trainer", "decline_weight", "trees",
                                      "calibration", "feature_hash") if k in summary}  # fmt: skip
    params.update({k: v for k, v in summary.get("params", {}).items()})
    if "ignored_features" in summary:  # an MLflow param is a string
        params["ignored_features"] = ",".join(summary["ignored_features"]) or "none"
    for w in ("training_window_ms", "test_window_ms"):
        if w in summary:
            params[w] = f"{summary[w][0]}..{summary[w][1]}"
    metrics = flatten("test", summary.get("metrics_test", {}))
    flatten("cost", summary.get("cost", {}), metrics)
    flatten("segment", summary.get("segments", {}), metrics)
    tags = {"authpilot.kind": kind, "authpilot.version": version}
    with run(s, name, f"train {name}/{version}", tags) as (c, ref):
        log_all(c, ref.run_id, params, metrics)
        c.log_artifacts(ref.run_id, str(train_dir), "train")
    summary["mlflow_run_id"] = ref.run_id
    (train_dir / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    return ref
