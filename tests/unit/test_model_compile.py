"""Compiled models: equal to LightGBM, verified at load, and the tl2cgen union-bug guard."""

from __future__ import annotations

import json
import shutil
import struct

import lightgbm as lgb
import numpy as np
import pytest

from app.model.calibration import Calibration, choose, fit_isotonic, fit_platt
from app.model.compile import compile_model, sha256
from app.model.scoring import CompiledModel, ModelRejected

NF = 12
HASH = "test-features-1"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, NF))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values must route like LightGBM's
    logit = 1.5 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) + 0.5 * np.isnan(x[:, 2])
    y = (rng.random(6000) < 1 / (1 + np.exp(-logit))).astype(int)
    b = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 1},
                  lgb.Dataset(x, y), 30)  # fmt: skip
    d = tmp_path_factory.mktemp("m")
    b.save_model(str(d / "model.txt"))
    cal = fit_platt(b.predict(x[:3000]), y[:3000].astype(float))
    out = d / "router" / "v1"
    compile_model(d / "model.txt", out, name="router", version="v1",
                  feature_names=[f"f{i}" for i in range(NF)], feature_hash=HASH,
                  calibration=cal, test_rows=x[:16])  # fmt: skip
    return b, cal, x, out


def test_compiled_equals_lightgbm_on_the_whole_set(trained):
    b, cal, x, out = trained
    m = CompiledModel(out, HASH)
    got = np.empty(len(x))
    m.score_many(np.ascontiguousarray(x), got)
    want = cal.apply(b.predict(x))
    assert np.max(np.abs(got - want)) < 1e-6
    # raw (uncalibrated) equality, to show the trees themselves agree
    m.calibration = Calibration("none")
    m.score_many(np.ascontiguousarray(x), got)
    assert np.max(np.abs(got - b.predict(x))) < 1e-6


def test_union_bug_guard(trained):
    b, _cal, _x, out = trained
    # a valid double whose low 32 bits are all ones: as union Entry it reads missing == -1
    bits = struct.unpack("<Q", struct.pack("<d", 0.75))[0] | 0xFFFFFFFF
    v = struct.unpack("<d", struct.pack("<Q", bits))[0]
    assert struct.unpack("<i", struct.pack("<d", v)[:4])[0] == -1
    rows = np.zeros((4, NF))
    rows[:, 0] = [v, -v, 3 * v, 0.5]
    m = CompiledModel(out, HASH)
    m.calibration = Calibration("none")
    got = m.score_many(rows, np.empty(4))
    assert np.max(np.abs(got - b.predict(rows))) < 1e-6
    # the raw generated predict() on the same bytes takes the missing branch instead
    import ctypes

    lib = ctypes.CDLL(str(out / "model.so"))
    entry = np.ascontiguousarray(rows[0])  # union Entry is 8 bytes: the doubles as they are
    res = np.zeros(1)
    lib.predict(entry.ctypes.data_as(ctypes.c_void_p), 0, res.ctypes.data_as(ctypes.c_void_p))
    as_missing = rows[:1].copy()
    as_missing[0, 0] = np.nan
    assert res[0] == pytest.approx(b.predict(as_missing)[0], abs=1e-9)
    assert abs(b.predict(as_missing)[0] - b.predict(rows[:1])[0]) > 1e-3, "branches differ"


def test_tampered_file_is_refused(trained, tmp_path):
    *_, out = trained
    bad = tmp_path / "v"
    shutil.copytree(out, bad)
    with open(bad / "model.txt", "a") as f:
        f.write("\n")
    with pytest.raises(ModelRejected) as e:
        CompiledModel(bad, HASH)
    assert e.value.reason == "checksum"


def test_feature_hash_mismatch_is_refused(trained):
    *_, out = trained
    with pytest.raises(ModelRejected) as e:
        CompiledModel(out, "other-features")
    assert e.value.reason == "feature_hash"


def test_garbage_library_with_matching_checksum_is_refused(trained, tmp_path):
    *_, out = trained
    bad = tmp_path / "v"
    shutil.copytree(out, bad)
    (bad / "model.so").write_bytes(b"\x7fELF not really a library" * 10)
    man = json.loads((bad / "manifest.json").read_text())
    man["files"]["model.so"] = sha256(bad / "model.so")
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelRejected) as e:
        CompiledModel(bad, HASH)
    assert e.value.reason == "load"


def test_warmup_mismatch_is_refused(trained, tmp_path):
    *_, out = trained
    bad = tmp_path / "v"
    shutil.copytree(out, bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["test_vector"]["expected"][0] += 1e-3
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelRejected) as e:
        CompiledModel(bad, HASH)
    assert e.value.reason == "warmup"


def test_calibration_maps():
    rng = np.random.default_rng(3)
    p_true = rng.random(20000)
    y = (rng.random(20000) < p_true).astype(float)
    raw = p_true**2  # a miscalibrated but monotone score
    iso = fit_isotonic(raw, y)
    platt = fit_platt(raw, y)
    for cal in (iso, platt):
        q = cal.apply(raw.copy())
        assert abs(q.mean() - y.mean()) < 0.01
        assert np.all(np.diff(q[np.argsort(raw)]) >= -1e-12), "calibration must stay monotone"
    # isotonic equals np.interp over its knots
    assert np.allclose(iso.apply(raw.copy()), np.interp(raw, iso.x, iso.y))
    best, scores = choose(raw, y)
    assert best.kind in {"isotonic", "platt"} and scores[best.kind] < scores["none"]
    assert Calibration.from_dict(best.to_dict()) == best
