"""A model that must not serve is refused with ModelRejected(reason), never a crash: tampered
files, other feature definitions, corrupt libraries (also when their checksum matches), a
warm-up mismatch, a broken manifest; and `rebuild` recompiles in place but not a tampered dir."""

from __future__ import annotations

import json
import shutil
import subprocess

import lightgbm as lgb
import numpy as np
import pytest

from app.cli.main import main as cli
from app.models.artifact import ModelRejected, sha256
from app.models.serving.scoring import CompiledModel
from app.models.training.compile import compile_model, rebuild

NF = 6
HASH = "features-A"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, NF))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=2000) > 0).astype(int)
    b = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(x, y), 10)
    out = tmp_path_factory.mktemp("s") / "m" / "v1"
    compile_model(b, out, name="m", version="v1", feature_names=[f"f{i}" for i in range(NF)],
                  feature_hash=HASH, calibration={"kind": "platt", "a": 1.2, "b": -0.1},
                  test_matrix=x[:8])  # fmt: skip
    return b, x, out


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(d, fn) -> None:
    man = json.loads((d / "manifest.json").read_text())
    fn(man)
    (d / "manifest.json").write_text(json.dumps(man))


def _rejected(d, reason, expected_hash=HASH, **kw) -> ModelRejected:
    with pytest.raises(ModelRejected) as e:
        CompiledModel(d, expected_hash, **kw)
    assert e.value.reason == reason, str(e.value)
    return e.value


def test_a_good_model_loads(built):
    b, x, out = built
    m = CompiledModel(out, HASH)
    assert m.label == "m/v1" and m.num_feature == NF
    assert np.max(np.abs(m.predict_raw(x, np.empty(len(x))) - b.predict(x))) < 1e-6


def test_a_version_rewritten_in_place_does_not_change_the_code_that_serves(built, tmp_path):
    """The worker runs a private, re-checksummed copy of model.so: overwriting the version's
    library after the load (a bad rsync onto the model volume) changes nothing it runs."""
    _, x, _ = built
    d = _copy(built[-1], tmp_path)
    m = CompiledModel(d, HASH)
    before = m.predict_raw(x, np.empty(len(x))).copy()
    (d / "model.so").write_bytes(b"\x7fELF overwritten" * 500)
    assert np.array_equal(m.predict_raw(x, np.empty(len(x))), before)
    m.warmup_check()
    _rejected(d, "checksum")  # and a new load of that version is refused


def test_tampered_model_txt_is_refused(built, tmp_path):
    d = _copy(built[-1], tmp_path)
    with open(d / "model.txt", "a") as f:
        f.write("\n")
    _rejected(d, "checksum")


def test_truncated_library_with_stale_checksum_is_refused(built, tmp_path):
    d = _copy(built[-1], tmp_path)
    so = d / "model.so"
    so.write_bytes(so.read_bytes()[: so.stat().st_size // 2])
    _rejected(d, "checksum")


def test_truncated_library_with_matching_checksum_is_refused_without_crashing(built, tmp_path):
    # dlopen of this file kills the process with SIGBUS: the probe process takes that hit
    d = _copy(built[-1], tmp_path)
    so = d / "model.so"
    so.write_bytes(so.read_bytes()[: so.stat().st_size // 2])
    _edit_manifest(d, lambda m: m["files"].__setitem__("model.so", sha256(so)))
    err = _rejected(d, "probe")
    assert "probe process" in err.detail


def test_garbage_library_with_matching_checksum_is_refused(built, tmp_path):
    d = _copy(built[-1], tmp_path)
    (d / "model.so").write_bytes(b"\x7fELF not really a library" * 40)
    _edit_manifest(d, lambda m: m["files"].__setitem__("model.so", sha256(d / "model.so")))
    _rejected(d, "probe")
    _rejected(d, "load", probe=False)  # dlopen itself refuses garbage: an OSError, no crash


def test_a_library_without_the_shim_is_refused(built, tmp_path):
    d = _copy(built[-1], tmp_path)
    lib = tmp_path / "plain.so"
    src = tmp_path / "plain.c"
    src.write_text("int get_num_feature(void) { return 6; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    shutil.copyfile(lib, d / "model.so")
    _edit_manifest(d, lambda m: m["files"].__setitem__("model.so", sha256(d / "model.so")))
    _rejected(d, "probe")
    _rejected(d, "load", probe=False)


def test_feature_hash_mismatch_is_refused(built):
    err = _rejected(built[-1], "feature_hash", expected_hash="features-B")
    assert "features-A" in err.detail and "features-B" in err.detail


def test_warmup_mismatch_is_refused(built, tmp_path):
    d = _copy(built[-1], tmp_path)
    _edit_manifest(d, lambda m: m["test_vector"]["expected"].__setitem__(0, 0.5 + 2e-6))
    _rejected(d, "warmup")
    d2 = _copy(built[-1], tmp_path / "2")
    _edit_manifest(d2, lambda m: m["calibration"].__setitem__("a", 1.3))  # another map
    _rejected(d2, "warmup")


def test_broken_manifests_are_refused(built, tmp_path):
    d = _copy(built[-1], tmp_path)
    (d / "manifest.json").write_text("{not json")
    _rejected(d, "manifest")
    (d / "manifest.json").unlink()
    _rejected(d, "manifest")
    d2 = _copy(built[-1], tmp_path / "2")
    _edit_manifest(d2, lambda m: m["files"].pop("model.so"))  # an unchecked library
    _rejected(d2, "manifest")
    d3 = _copy(built[-1], tmp_path / "3")
    _edit_manifest(d3, lambda m: m.update(calibration={"kind": "isotonic", "x": [0.5, 0.2],
                                                       "y": [0.1, 0.2]}))  # fmt: skip
    _rejected(d3, "manifest")


def test_rebuild_in_place_and_refuse_a_tampered_dir(built, tmp_path, capsys):
    b, x, out = built
    d = _copy(out, tmp_path)
    before = json.loads((d / "manifest.json").read_text())
    assert cli(["compile", "--rebuild", str(d)]) == 0
    after = json.loads((d / "manifest.json").read_text())
    assert after["test_vector"] == before["test_vector"]
    assert after["build"]["tl2cgen_params"] == before["build"]["tl2cgen_params"]
    m = CompiledModel(d, HASH)
    assert np.max(np.abs(m.predict_raw(x, np.empty(len(x))) - b.predict(x))) < 1e-6
    with open(d / "model.txt", "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="differs from its manifest"):
        rebuild(d)
    assert cli(["compile", "--rebuild", str(d)]) == 1
    assert "failed" in capsys.readouterr().err


def test_malformed_manifest_fields_are_refused_not_raised(built, tmp_path):
    for i, edit in enumerate(
        [
            lambda m: m["test_vector"].__setitem__("rows", [[1.0, 2.0]]),  # wrong width
            lambda m: m["test_vector"].__setitem__("expected", ["x"]),
            lambda m: m.__setitem__("num_feature", "six"),
            lambda m: m.__setitem__("files", ["model.so"]),
        ]
    ):
        d = _copy(built[-1], tmp_path / str(i))
        _edit_manifest(d, edit)
        _rejected(d, "manifest")
