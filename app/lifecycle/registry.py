"""The MLflow model registry: every compiled model a registered version, roles as aliases.

A compiled_models/<name>/<version>/ directory is logged as the `compiled` artifact of its
training run and registered as a version of the registered model <name> (router, retry), tagged
with authpilot's version string, the feature hash and the library's sha256. MLflow numbers
versions itself (1, 2, ...); commands take authpilot's version string and look it up by tag.

Roles are aliases: `champion`, `challenger` and `retry`, the same names as the control topic's
roles (app.models.roles). The alias says what the registry wants served; the control topic is
what workers act on, so `promote` moves the alias and then writes the topic (and moves the
alias back when the topic write fails). A worker that lacks a promoted directory downloads it
from the record's `source` (fetch_to) and verifies it as it verifies a local one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.lifecycle import tracking
from app.models.artifact import LIBRARY, read_manifest

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)
VERSION_TAG = "authpilot.version"
ARTIFACT_PATH = "compiled"
# The run metrics `authpilot models` shows, by the keys tracking.flatten gives them.
SHOWN_METRICS = {
    "log_loss": "test.model_calibrated.log_loss",
    "ece": "test.model_calibrated.ece",
    "auc": "test.model_calibrated.roc_auc",
}


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked; the CLI prints it and exits 2."""


@dataclass(frozen=True)
class Registered:
    name: str
    version: str  # authpilot's
    mlflow_version: str
    source: str  # artifact URI of the compiled directory
    run_id: str | None
    aliases: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _registered(mv: ModelVersion, aliases: tuple[str, ...] = (),
                metrics: dict[str, float] | None = None) -> Registered:  # fmt: skip
    tags = dict(mv.tags or {})
    return Registered(mv.name, tags.get(VERSION_TAG, str(mv.version)), str(mv.version),
                      str(mv.source), mv.run_id, aliases, metrics or {}, tags)  # fmt: skip


def find(c: MlflowClient, name: str, version: str) -> ModelVersion | None:
    """The registered version carrying authpilot version `version` (None if not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = c.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    for mv in versions:
        if (mv.tags or {}).get(VERSION_TAG) == version:
            return mv
    return None


def register(s: Settings, model_dir: Path, run_id: str | None = None,
             kind: str = "router") -> Registered:  # fmt: skip
    """Log a compiled directory to run_id (a new run of its experiment when None) and register
    it. Registering the same version again returns the existing one when its library is the
    same, and raises RegistryError when it differs (a version string names one artifact)."""
    m = read_manifest(model_dir)
    name, version = m["name"], m["version"]
    sha = m["files"][LIBRARY]
    c = tracking.client(s)
    old = find(c, name, version)
    if old is not None:
        if (old.tags or {}).get("authpilot.library_sha256") != sha:
            raise RegistryError(f"{name}/{version} is registered (MLflow version {old.version}) "
                                "with another library; compile under a new version")  # fmt: skip
        return _registered(old)
    tags = {VERSION_TAG: version, "authpilot.kind": kind, "authpilot.library_sha256": sha,
            "authpilot.feature_hash": m["feature_hash"],
            "authpilot.trainer": str(m.get("trainer", ""))}  # fmt: skip
    if run_id is not None and not _run_exists(c, run_id):
        log.warning("training run %s is not in %s; registering %s/%s under a new run", run_id,
                    tracking.store_of(s).describe(), name, version)  # fmt: skip
        run_id = None
    if run_id is None:
        with tracking.run(s, name, f"register {name}/{version}", {"authpilot.kind": kind}) as (
            _,
            ref,
        ):
            run_id = ref.run_id
            tracking.log_all(c, run_id, {"name": name, "version": version},
                             tracking.flatten("test", m.get("metrics", {})))  # fmt: skip
    c.log_artifacts(run_id, str(model_dir), ARTIFACT_PATH)
    tracking.log_all(c, run_id, tags={"authpilot.registered": version})
    base = str(c.get_run(run_id).info.artifact_uri)
    from mlflow.exceptions import MlflowException

    try:
        c.create_registered_model(name, description=f"authpilot {kind} models")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    mv = c.create_model_version(name, f"{base}/{ARTIFACT_PATH}", run_id, tags=tags,
                                description=f"compiled {name}/{version}")  # fmt: skip
    return _registered(mv)


def _run_exists(c: MlflowClient, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        c.get_run(run_id)
    except MlflowException:
        return False
    return True


def aliases_of(c: MlflowClient, name: str) -> dict[str, str]:
    """alias -> MLflow version number of one registered model ({} when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return {str(k): str(v) for k, v in c.get_registered_model(name).aliases.items()}
    except MlflowException:
        return {}


def set_alias(s: Settings, name: str, version: str, alias: str) -> tuple[Registered, str | None]:
    """Point `alias` of model `name` at authpilot version `version`; returns the version and
    the MLflow version the alias pointed at before (None: it was unset)."""
    c = tracking.client(s)
    mv = find(c, name, version)
    if mv is None:
        raise RegistryError(f"{name}/{version} is not a registered model version in "
                            f"{tracking.store_of(s).describe()}")  # fmt: skip
    before = aliases_of(c, name).get(alias)
    c.set_registered_model_alias(name, alias, str(mv.version))
    return _registered(mv, (alias,)), before


def restore_alias(s: Settings, name: str, alias: str, mlflow_version: str | None) -> None:
    """Undo set_alias (the control topic refused the promotion it was for)."""
    c = tracking.client(s)
    if mlflow_version is None:
        c.delete_registered_model_alias(name, alias)
    else:
        c.set_registered_model_alias(name, alias, mlflow_version)


def delete_alias(s: Settings, name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already unset
        tracking.client(s).delete_registered_model_alias(name, alias)


def by_alias(s: Settings, name: str, alias: str) -> Registered | None:
    from mlflow.exceptions import MlflowException

    c = tracking.client(s)
    try:
        mv = c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _registered(mv, (alias,))


def listing(s: Settings) -> list[Registered]:
    """Every registered version of every model, newest first, with aliases and shown metrics."""
    c = tracking.client(s)
    out: list[Registered] = []
    for rm in c.search_registered_models():
        inverse: dict[str, list[str]] = {}
        for alias, v in rm.aliases.items():
            inverse.setdefault(str(v), []).append(str(alias))
        for mv in sorted(c.search_model_versions(f"name='{rm.name}'"),
                         key=lambda v: int(v.version), reverse=True):  # fmt: skip
            metrics: dict[str, float] = {}
            if mv.run_id:
                got = c.get_run(mv.run_id).data.metrics
                metrics = {k: got[key] for k, key in SHOWN_METRICS.items() if key in got}
            out.append(_registered(mv, tuple(sorted(inverse.get(str(mv.version), []))), metrics))
    return out


def local_copy(s: Settings, source: str, name: str, version: str) -> Path:
    """name/version's directory: model_dir's when there, else downloaded (once) to
    model_cache_dir from `source`. What workers and retrain load models from."""
    shipped = s.model_dir / name / version
    if (shipped / "manifest.json").exists():
        return shipped
    return fetch_to(s, source, s.model_cache_dir / name / version)


def fetch_to(s: Settings, source: str, dest: Path) -> Path:
    """Download a compiled directory from the artifact store to dest (atomically: a partial
    download never sits at dest). The caller verifies it (checksums, feature hash, warm-up)."""
    import mlflow.artifacts

    if (dest / "manifest.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".fetch-{dest.name}-", dir=dest.parent))
    try:
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(tmp), tracking_uri=tracking.store_of(s).uri
            )
        )
        json.loads((got / "manifest.json").read_text())  # a directory, with a manifest
        os.replace(got, dest)
    except FileNotFoundError as exc:
        raise RegistryError(f"{source} holds no manifest.json") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def record_fields(r: Registered) -> dict[str, Any]:
    """What a control record carries of the registry: enough for a worker to fetch."""
    return {"mlflow_version": r.mlflow_version, "source": r.source}
