"""Compiled models equal LightGBM (missing values included), calibration in C equals numpy,
the tl2cgen 1.0.0 union-bug guard, the manifest, and the scoring core's input handling."""

from __future__ import annotations

import ctypes
import json
import struct
import tracemalloc

import lightgbm as lgb
import numpy as np
import pytest

from app.models.calibration import Calibration, choose, fit_isotonic, fit_platt
from app.models.serving.scoring import CompiledModel
from app.models.training.compile import compile_model, guard_report
from app.models.training.frameworks import split_thresholds

NF = 12
HASH = "test-features-1"


def _collide(v: float) -> float:
    """v with its low 32 bits set: as a union Entry it reads `missing == -1`."""
    bits = struct.unpack("<Q", struct.pack("<d", v))[0] | 0xFFFFFFFF
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, NF))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values must route like LightGBM's
    logit = 1.5 * np.nan_to_num(x[:, 0], nan=-3) - np.nan_to_num(x[:, 1]) + 0.5 * np.isnan(x[:, 2])
    y = (rng.random(6000) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": 1}
    b = lgb.train(params, lgb.Dataset(x, y), 20)
    cal = fit_platt(b.predict(x[:3000]), y[:3000].astype(float))
    out = tmp_path_factory.mktemp("m") / "router" / "v1"
    compile_model(b, out, name="router", version="v1", feature_names=[f"f{i}" for i in range(NF)],
                  feature_hash=HASH, calibration=cal, test_matrix=x[3000:], metrics={"auc": 0.7},
                  training_window=[1, 2], annotate_matrix=x[:3000])  # fmt: skip
    return b, cal, x, y, out


@pytest.fixture(scope="module")
def model(trained):
    return CompiledModel(trained[-1], HASH)


def test_compiled_equals_lightgbm_on_the_whole_set_with_missing(trained, model):
    b, cal, x, _y, _out = trained
    assert np.isnan(x).mean() > 0.05
    got = np.empty(len(x))
    model.predict_raw(np.ascontiguousarray(x), got)
    assert np.max(np.abs(got - b.predict(x))) < 1e-6  # the trees and the sigmoid agree
    model.score_many(np.ascontiguousarray(x), got)
    assert np.max(np.abs(got - cal.apply(b.predict(x)))) < 1e-6
    # an all-missing row and +-inf take LightGBM's branches too
    odd = np.array([[np.nan] * NF, [np.inf] * NF, [-np.inf] * NF, [0.0] * NF])
    assert np.max(np.abs(model.predict_raw(odd, np.empty(4)) - b.predict(odd))) < 1e-6


def test_calibration_in_c_matches_numpy_reference(trained, model):
    b, _cal, x, y, _out = trained
    raw = b.predict(x)
    iso, platt = fit_isotonic(raw[:3000], y[:3000].astype(float)), fit_platt(raw, y.astype(float))
    assert iso.kind == "isotonic" and len(iso.x) > 5
    # knots placed on actual raw outputs: rows hit knots exactly, fall between them, and lie
    # beyond both ends (where np.interp clamps)
    knots = np.unique(raw)[3:-3:20]
    on_knots = Calibration("isotonic", knots.tolist(), np.linspace(0.1, 0.9, len(knots)).tolist())
    xs = np.ascontiguousarray(x)
    try:
        for cal in (iso, on_knots, platt, Calibration("none")):
            model.calibration = cal
            got = model.score_many(xs, np.empty(len(xs)))
            assert np.max(np.abs(got - cal.apply(raw.copy()))) < 1e-9, cal.kind
        assert np.isin(raw, knots).sum() >= len(knots) > 5
        assert (raw < knots[0]).any() and (raw > knots[-1]).any()
    finally:
        model.calibration = trained[1]


def test_union_bug_guard(trained, model):
    b, _cal, _x, _y, out = trained
    v = _collide(0.75)
    assert struct.unpack("<i", struct.pack("<d", v)[:4])[0] == -1  # low word reads as -1
    rows = np.zeros((5, NF))
    rows[:, 0] = [v, -v, 3 * v, _collide(0.0), 0.5]  # _collide(0.0) is a tiny subnormal
    got = model.predict_raw(rows, np.empty(5))
    assert np.max(np.abs(got - b.predict(rows))) < 1e-6  # the guarded core agrees with LightGBM
    # the generated predict() on the same bytes, unguarded, takes the missing branch instead
    lib = ctypes.CDLL(str(out / "model.so"))
    entry = np.ascontiguousarray(rows[0])  # union Entry is 8 bytes: the doubles as they are
    res = np.zeros(1)
    lib.predict(ctypes.c_void_p(entry.ctypes.data), 0, ctypes.c_void_p(res.ctypes.data))
    as_missing = rows[:1].copy()
    as_missing[0, 0] = np.nan
    assert abs(b.predict(as_missing)[0] - b.predict(rows[:1])[0]) > 1e-3, "branches must differ"
    assert res[0] == pytest.approx(b.predict(as_missing)[0], abs=1e-9)
    assert abs(res[0] - b.predict(rows[:1])[0]) > 1e-3


def test_guard_report_flags_thresholds_next_to_collisions():
    v = _collide(0.3)
    below = struct.unpack("<d", struct.pack("<Q", struct.unpack("<Q", struct.pack("<d", v))[0] - 1))
    assert guard_report(np.array([0.1, 0.2, -1.5]))["exact"]
    for t in (v, -v, below[0]):
        rep = guard_report(np.array([0.1, t]))
        assert not rep["exact"] and rep["risky_thresholds"] == 1


def test_split_thresholds_are_lightgbms(trained):
    b, *_rest, out = trained
    df = b.trees_to_dataframe()
    want = np.sort(df.threshold.dropna().to_numpy(float))
    got = np.sort(split_thresholds(out / "model.txt"))
    got[np.isinf(got)] = np.sign(got[np.isinf(got)]) * 1e300  # the dump writes inf as 1e300
    assert np.array_equal(got, want)


def test_manifest_contents(trained):
    *_rest, out = trained
    m = json.loads((out / "manifest.json").read_text())
    assert m["feature_names"] == [f"f{i}" for i in range(NF)] and m["num_feature"] == NF
    assert m["feature_hash"] == HASH and m["metrics"] == {"auc": 0.7}
    assert m["training_window"] == [1, 2]
    assert m["calibration"]["kind"] == "platt"
    assert set(m["library_versions"]) >= {"lightgbm", "treelite", "tl2cgen", "gcc", "python"}
    assert m["library_versions"]["gcc"].startswith("gcc")
    assert set(m["files"]) == {"model.so", "model.txt", "annotation.json"}
    assert m["build"]["annotated"] and m["build"]["tl2cgen_params"]["quantize"] == 1
    assert m["guard"]["exact"] and m["guard"]["thresholds_checked"] > 100
    tv = m["test_vector"]
    assert len(tv["rows"]) == len(tv["expected"]) >= 10
    assert any(all(v is None for v in r) for r in tv["rows"]), "an all-missing warm-up row"
    low_words = [struct.unpack("<Q", struct.pack("<d", v))[0] & 0xFFFFFFFF for v in tv["rows"][-1]]
    assert all(w == 0xFFFFFFFF for w in low_words), "a union-bug warm-up row"


def test_uncalibrated_manifest_has_null_map(trained, tmp_path):
    b, _cal, x, *_ = trained
    p = compile_model(b, tmp_path / "v", name="r", version="v", feature_hash="h",
                      feature_names=[f"f{i}" for i in range(NF)], parallel_comp=1,
                      quantize=False)  # fmt: skip
    assert json.loads(p.read_text())["calibration"] is None
    m = CompiledModel(tmp_path / "v", "h", probe=False)
    assert np.max(np.abs(m.score_many(x[:500].copy(), np.empty(500)) - b.predict(x[:500]))) < 1e-6


def test_inputs_that_cannot_be_passed_as_is_are_copied(trained, model):
    b, cal, x, *_ = trained
    want = cal.apply(b.predict(x[:200]))
    fortran = np.asfortranarray(x[:200])
    readonly = np.ascontiguousarray(x[:200])
    readonly.flags.writeable = False
    for xi in (fortran, x[:200].astype(np.float32), readonly):
        got = model.score_many(xi, np.empty(200))
        assert np.max(np.abs(got - cal.apply(b.predict(np.asarray(xi))))) < 1e-6
    strided = x[:400:2]  # a non-contiguous view, more rows than max_batch (64)
    got = model.score_many(strided, np.empty(200))
    assert np.max(np.abs(got - cal.apply(b.predict(strided)))) < 1e-6
    out = np.zeros(400)[::2]  # non-contiguous out
    model.score_many(np.ascontiguousarray(x[:200]), out)
    assert np.max(np.abs(out - want)) < 1e-6
    assert model.score_many(np.empty((0, NF)), np.empty(4)).shape == (0,)
    with pytest.raises(ValueError):
        model.score_many(np.zeros((4, NF)), np.empty(3))  # out too small: never a C overrun
    with pytest.raises(ValueError):
        model.score_many(np.zeros((4, NF - 1)), np.empty(4))


def test_score_many_does_not_allocate_per_call(trained, model):
    _b, _cal, x, *_ = trained
    req, out = np.ascontiguousarray(x[:4]), np.empty(64)
    model.score_many(req, out)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(2000):
            model.score_many(req, out)
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a view and two ctypes wrappers live during a call; no array data is allocated
    assert peak - base < 2048 and cur - base < 1024


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


def test_preallocated_buffers_with_n_and_switching_buffers(trained, model):
    b, cal, x, *_ = trained
    xbuf, pbuf = np.empty((64, NF)), np.empty(64)
    for k in (4, 1, 64, 3):  # the same buffers, another request size each call
        xbuf[:k] = x[k : 2 * k]
        got = model.score_many(xbuf, pbuf, k)
        assert got.shape == (k,)
        assert np.max(np.abs(got - cal.apply(b.predict(x[k : 2 * k])))) < 1e-6
    other_x, other_out = np.ascontiguousarray(x[100:110]), np.empty(10)
    got = model.score_many(other_x, other_out)  # new buffers: new pointers, not stale ones
    assert np.max(np.abs(got - cal.apply(b.predict(x[100:110])))) < 1e-6
    want = cal.apply(b.predict(xbuf[:4]))
    assert np.max(np.abs(model.score_many(xbuf, pbuf, 4) - want)) < 1e-6
    with pytest.raises(ValueError):
        model.score_many(xbuf, pbuf, 65)
    with pytest.raises(ValueError):
        model.score_many(xbuf, np.empty(8), 9)


@pytest.fixture(scope="module")
def xgb_trained(tmp_path_factory):
    """A small XGBoost model on the same kind of data (NaNs included), compiled."""
    import xgboost as xgb

    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, NF))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.nan_to_num(x[:, 0], nan=-1) - np.nan_to_num(x[:, 1]) + rng.normal(size=4000) > 0
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 1}
    b = xgb.train(params, xgb.DMatrix(x, y.astype(int)), 25)
    cal = fit_platt(b.inplace_predict(x[:2000]).astype(float), y[:2000].astype(float))
    out = tmp_path_factory.mktemp("x") / "router" / "x1"
    compile_model(b, out, name="router", version="x1", feature_names=[f"f{i}" for i in range(NF)],
                  feature_hash=HASH, calibration=cal, test_matrix=x[2000:],
                  annotate_matrix=x[:2000])  # fmt: skip
    return b, cal, x, out


def test_compiled_xgboost_equals_xgboost(xgb_trained):
    b, cal, x, out = xgb_trained
    m = CompiledModel(out, HASH)
    man = json.loads((out / "manifest.json").read_text())
    assert man["trainer"] == "xgboost" and man["threshold_type"] == "float32"
    assert set(man["files"]) == {"model.so", "model.json", "annotation.json"}
    odd = np.array([[np.nan] * NF, [np.inf] * NF, [-np.inf] * NF, [_collide(0.75)] * NF])
    rows = np.ascontiguousarray(np.vstack([x, odd]))
    want = b.inplace_predict(rows).astype(np.float64)  # XGBoost's own outputs
    got = m.predict_raw(rows, np.empty(len(rows)))
    assert np.max(np.abs(got - want)) < 1e-6
    got = m.score_many(rows, np.empty(len(rows)))
    assert np.max(np.abs(got - cal.apply(want.copy()))) < 1e-6


def test_xgboost_json_rewrite_refuses_what_it_cannot_keep_exact(xgb_trained):
    from app.models.training.frameworks import xgboost_json_for_treelite

    b = xgb_trained[0]
    d = json.loads(b.save_raw("json"))
    base = d["learner"]["learner_model_param"]["base_score"]
    assert base.startswith("[")  # XGBoost 3.x writes a vector; treelite 4.1.2 would read 0
    rewritten = json.loads(xgboost_json_for_treelite(json.dumps(d)))["learner"]
    assert rewritten["learner_model_param"]["base_score"] == repr(json.loads(base)[0])
    assert "cats" not in rewritten["gradient_booster"]["model"]
    d["learner"]["objective"]["name"] = "reg:squarederror"
    with pytest.raises(ValueError, match="binary:logistic"):
        xgboost_json_for_treelite(json.dumps(d))


@pytest.fixture(scope="module", params=["lightgbm", "xgboost"])
def any_model(request, trained, xgb_trained):
    """Each trainer's compiled model: the scoring contract holds for both."""
    x, out = (trained[2], trained[-1]) if request.param == "lightgbm" else xgb_trained[2:]
    return CompiledModel(out, HASH, probe=False), x


def test_score_batch_equals_per_request_exactly(any_model):
    model, x = any_model
    sizes = [4, 1, 0, 7, 4, 3, 12, 4]  # each request its own number of candidate routes
    offsets = np.zeros(64, dtype=np.int32)  # preallocated: capacity beyond this batch
    offsets[1 : len(sizes) + 1] = np.cumsum(sizes)
    k, n = len(sizes), int(np.sum(sizes))
    xbuf, out = np.full((64, NF), np.nan), np.empty(64)
    xbuf[:n] = x[:n]
    got = model.score_batch(xbuf, out, offsets, k)
    assert got.shape == (n,)
    for i in range(k):
        a, b = offsets[i], offsets[i + 1]
        one = model.score_many(np.ascontiguousarray(x[a:b]), np.empty(max(1, b - a)))
        assert np.array_equal(out[a:b], one), i  # bit for bit: the same C code per row
    # the copy path (int64 offsets, a non-contiguous x) gives the same numbers
    slow = model.score_batch(np.asfortranarray(xbuf[:n]), np.empty(n), offsets[: k + 1].astype(int))
    assert np.array_equal(slow, got)
    # a sub-batch of the same buffers; k defaults to len(offsets) - 1
    assert np.array_equal(model.score_batch(xbuf, out, offsets, 2), got[: offsets[2]])
    assert np.array_equal(model.score_batch(xbuf, out, offsets[: k + 1]), got)
    assert model.score_batch(xbuf, out, offsets, 0).shape == (0,)


def test_score_batch_refuses_bad_offsets_without_scoring(any_model):
    model, x = any_model
    xbuf, out = np.ascontiguousarray(x[:16]), np.full(16, -1.0)
    for bad in ([1, 4, 8], [0, 4, 2], [0, 4, 17], [0, -1]):
        for offsets in (np.array(bad, dtype=np.int32), np.array(bad, dtype=np.int64)):
            with pytest.raises(ValueError):
                model.score_batch(xbuf, out, offsets)
            assert np.all(out == -1.0), bad  # nothing written
    with pytest.raises(ValueError):
        model.score_batch(xbuf, out, np.array([0, 4], dtype=np.int32), 2)  # k past offsets
    with pytest.raises(ValueError):
        model.score_batch(xbuf, np.empty(3), np.array([0, 4], dtype=np.int32))  # out too small


def test_score_batch_does_not_allocate_per_call(trained, model):
    x = trained[2]
    xbuf, out = np.ascontiguousarray(x[:32]), np.empty(32)
    offsets = np.arange(0, 33, 4, dtype=np.int32)
    model.score_batch(xbuf, out, offsets)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(2000):
            model.score_batch(xbuf, out, offsets)
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 2048 and cur - base < 1024
