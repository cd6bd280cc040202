"""The MLflow layer on a real embedded store (sqlite + artifact folder): runs, registered
versions, aliases as roles, and a worker's model slots fetching a version they lack."""

from __future__ import annotations

import json
import shutil
from functools import partial

import pytest

from app.cli.main import main as cli
from app.config import get_settings
from app.features.definitions import feature_hash
from app.lifecycle import registry, tracking
from app.models.artifact import ModelRejected
from app.models.serving.registry import ModelSlots
from tests.modelkit import build_versions


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    return build_versions(tmp_path_factory.mktemp("models"), ("v1", "v2"))


def test_register_alias_list_and_fetch(versions, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTHPILOT_MODEL_DIR", str(tmp_path / "empty"))
    s = get_settings()
    with tracking.run(s, "router", "train router/v1") as (c, ref):  # as `authpilot train` does
        tracking.log_all(
            c,
            ref.run_id,
            {"trainer": "lightgbm"},
            tracking.flatten("test", {"model (calibrated)": {"log_loss": 0.42}}),
        )
    r1 = registry.register(s, versions / "router" / "v1", ref.run_id)
    r2 = registry.register(s, versions / "router" / "v2")
    assert r1.run_id == ref.run_id and r2.run_id not in (None, ref.run_id)
    assert (r1.version, r2.version) == ("v1", "v2") and r1.mlflow_version != r2.mlflow_version
    assert registry.register(s, versions / "router" / "v1").mlflow_version == r1.mlflow_version
    got, before = registry.set_alias(s, "router", "v2", "champion")
    assert before is None and got.mlflow_version == r2.mlflow_version
    _, before = registry.set_alias(s, "router", "v1", "champion")
    assert before == r2.mlflow_version
    registry.restore_alias(s, "router", "champion", before)  # as promote does on a topic error
    assert registry.by_alias(s, "router", "champion").version == "v2"
    rows = {r.version: r for r in registry.listing(s)}
    assert rows["v2"].aliases == ("champion",) and rows["v1"].aliases == ()
    assert rows["v1"].metrics == {"log_loss": 0.42}  # the training run's, by the shown keys
    # a worker without the directory downloads it from the record's source, then verifies it
    slots = ModelSlots(tmp_path / "empty", feature_hash(), fetch=partial(registry.local_copy, s))
    rec = {"name": "router", "version": "v2", "role": "champion", **registry.record_fields(r2)}
    model = slots.load(rec)
    assert (
        model.label == "router/v2" and (s.model_cache_dir / "router" / "v2" / "model.so").exists()
    )
    with pytest.raises(ModelRejected, match="fetch"):
        slots.load(dict(rec, version="v9", source=r2.source + "-gone"))


def test_a_tampered_artifact_in_the_store_is_refused_after_download(versions, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    monkeypatch.setenv("AUTHPILOT_MODEL_DIR", str(tmp_path / "m"))
    s = get_settings()
    r1 = registry.register(s, versions / "router" / "v1")
    lib = next((tracking.store_of(s).artifact_root).rglob("compiled/model.so"))
    lib.write_bytes(lib.read_bytes() + b"\0")
    slots = ModelSlots(tmp_path / "m", feature_hash(), fetch=partial(registry.local_copy, s))
    with pytest.raises(ModelRejected, match="checksum"):
        slots.load(
            {"name": "router", "version": "v1", "role": "champion", **registry.record_fields(r1)}
        )


def test_a_version_string_names_one_artifact(versions, tmp_path):
    s = get_settings()
    registry.register(s, versions / "router" / "v1")
    other = tmp_path / "router" / "v1"
    shutil.copytree(versions / "router" / "v2", other)
    m = json.loads((other / "manifest.json").read_text())
    m["version"] = "v1"
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(registry.RegistryError, match="another library"):
        registry.register(s, other)


def test_models_lists_the_registry(versions, capsys):
    s = get_settings()
    registry.register(s, versions / "router" / "v1")
    registry.set_alias(s, "router", "v1", "challenger")
    assert cli(["models", "--no-kafka"]) == 0
    out = capsys.readouterr().out
    assert "router" in out and "v1" in out and "@challenger" in out


def test_flatten_keeps_numbers_only():
    got = tracking.flatten(
        "test", {"model (calibrated)": {"auc": 0.8, "n": 3, "x": "a", "nan": float("nan")}}
    )
    assert got == {"test.model_calibrated.auc": 0.8, "test.model_calibrated.n": 3.0}
