"""`authpilot bench-model`: one request with 4 candidate routes, scored four ways in one run.

(a) the scoring core (CompiledModel.score_many: one C call for the 4 rows + calibration),
(b) the raw generated predict() called per row through ctypes on a preallocated Entry buffer
    (the reference: nothing but the tree traversal and the call),
(c) tl2cgen.Predictor(nthread=1) with a DMatrix per call, (d) lightgbm Booster.predict.
"""

from __future__ import annotations

import argparse
import ctypes
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from app.model.calibration import fit_platt
from app.model.compile import compile_model
from app.model.scoring import CompiledModel


def _time(fn, reps: int) -> np.ndarray:
    for _ in range(min(200, reps)):
        fn()
    out = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = time.perf_counter_ns() - t0
    return out / 1000.0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="authpilot bench-model")
    p.add_argument("--features", type=int, default=45)
    p.add_argument("--trees", type=int, default=200)
    p.add_argument("--reps", type=int, default=20000)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100_000, a.features))
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(x[:, 0] - x[:, 1] + 0.5 * x[:, 2])))).astype(int)
    print(f"training {a.trees} trees x 31 leaves on {len(x)} rows, {a.features} features")
    b = lgb.train({"objective": "binary", "num_leaves": 31, "verbose": -1, "num_threads": 2},
                  lgb.Dataset(x, y), a.trees)  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        b.save_model(f"{d}/model.txt")
        out = Path(d) / "m" / "v"
        t0 = time.monotonic()
        compile_model(Path(f"{d}/model.txt"), out, name="m", version="v",
                      feature_names=[f"f{i}" for i in range(a.features)], feature_hash="bench",
                      calibration=fit_platt(b.predict(x[:5000]), y[:5000].astype(float)),
                      test_rows=x[:16])  # fmt: skip
        print(f"compiled in {time.monotonic() - t0:.1f}s")
        model = CompiledModel(out, "bench")
        req = np.ascontiguousarray(x[:4])
        buf = np.empty(4)
        lib = ctypes.CDLL(str(out / "model.so"))
        predict = lib.predict
        predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        entries = [np.ascontiguousarray(r) for r in req]  # preallocated Entry rows
        ptrs = [e.ctypes.data for e in entries]
        res = np.zeros(1)
        rp = res.ctypes.data

        def raw() -> None:
            for ptr in ptrs:
                res[0] = 0.0
                predict(ptr, 0, rp)

        import tl2cgen

        pred = tl2cgen.Predictor(str(out / "model.so"), nthread=1, verbose=False)
        runs = {
            "scoring core": lambda: model.score_many(req, buf),
            "raw C predict x4 (ref)": raw,
            "tl2cgen.Predictor": lambda: pred.predict(tl2cgen.DMatrix(req)),
            "Booster.predict": lambda: b.predict(req, num_threads=1),
        }
        times = {
            k: _time(f, a.reps if "Booster" not in k else a.reps // 10) for k, f in runs.items()
        }
    ref = np.median(times["raw C predict x4 (ref)"])
    print(f"\n{'one request, 4 routes':<24} {'median us':>10} {'p99 us':>9} {'x raw':>7}")
    for k, t in times.items():
        med = np.median(t)
        print(f"{k:<24} {med:10.2f} {np.percentile(t, 99):9.2f} {med / ref:7.2f}")
    core = np.median(times["scoring core"])
    print(f"\nscoring core is {np.median(times['Booster.predict']) / core:.1f}x faster than "
          f"Booster.predict and {core / ref:.2f}x the raw call")  # fmt: skip
    return 0
