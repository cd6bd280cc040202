"""`authpilot bench-model`: one request with 4 candidate routes, scored several ways in one run.

Trains LightGBM on synthetic data (default 40 features, 200 trees x 31 leaves, 100k rows),
compiles it with app.models.training.compile, then times every variant on the same 4-row request,
in rotating blocks so machine load hits all of them alike (gc disabled while timing):

  (a)  scoring core      CompiledModel.score_many(xbuf, pbuf, 4): one C call for 4 rows of
                         the preallocated buffers, calibration in C
  (a1) the same with a new view xbuf[:4] per call (its C pointer is wrapped each time)
  (a2) core + numpy cal  the same call uncalibrated, then the Platt map in numpy, in place
  (a3) per-row ctypes    numpy encodes an Entry buffer (NaN -> missing, guard), 4 predict()
                         calls, numpy calibration: the design without the C shim
  (b)  raw C (ref)       the generated predict() through ctypes, 4 calls on a preallocated
                         Entry buffer; only a memmove of the 4 rows into it (quantized code
                         rewrites its input) and a memset of the 4 results (predict adds to
                         them): the minimum a correct caller must do, nothing else
  (b1) the shim's C call with its pointers built beforehand, (b2) the same for 0 rows: b1 - b2
       is the C work for 4 rows, b2 what one ctypes call costs
  (c)  tl2cgen.Predictor nthread=1, a DMatrix per call
  (d)  Booster.predict   num_threads=1
  (e)  batches           CompiledModel.score_batch: 1, 8 and 32 requests x 4 routes in one C
                         call on the same preallocated buffers, reported per request and as a
                         ratio to (a) measured in the same run (what a caller holding several
                         events saves: the ctypes call and its Python checks, once per batch)
  (f)  the same B distinct requests scored one score_many(xbuf, pbuf, 4) call each, each
       request first copied into xbuf[:4] (np.copyto, ~0.5 us: a per-request caller fills its
       buffer this way; the batch caller's fill is not timed in (e)). (a) repeats one request,
       whose tree paths the branch predictor learns, so batches of distinct requests are
       compared with (f) as well

The target is (a) <= 1.5x (b) at the median.
"""

from __future__ import annotations

import ctypes
import gc
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

TARGET_RATIO = 1.5
BATCHES = (1, 8, 32)  # requests per score_batch call, 4 candidate routes each


def _synthetic(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    x[rng.random(x.shape) < 0.03] = np.nan  # some missing values, as in the real features
    z = np.nan_to_num(x)
    logit = z[:, 0] - z[:, 1] + 0.5 * z[:, 2] + 0.3 * z[:, 3] * z[:, 4] + 0.2 * np.sin(z[:, 5])
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def raw_reference(library: Path, req: np.ndarray) -> tuple[Callable[[], None], np.ndarray]:
    """(b): the generated predict() through ctypes on a preallocated Entry buffer (8-byte
    union: the doubles' bytes as they are, NaN as missing = -1 set once in a pristine copy),
    one call per row; only a memmove of the rows into it (quantized code rewrites its input)
    and a memset of the results (predict adds to them). Returns (call, its raw output)."""
    nrow, nf = req.shape
    lib = ctypes.PyDLL(str(library))
    predict = lib.predict
    predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    predict.restype = None
    pristine = np.ascontiguousarray(req, dtype=np.float64).copy()
    pristine.view(np.int64)[np.isnan(req)] = -1  # low word -1: Entry.missing
    entries = np.empty_like(pristine)
    res = np.zeros(nrow)
    src, dst, rp, nbytes = pristine.ctypes.data, entries.ctypes.data, res.ctypes.data, req.nbytes
    row_ptrs = [(dst + 8 * nf * r, rp + 8 * r) for r in range(nrow)]
    memmove, memset = ctypes.memmove, ctypes.memset

    def raw() -> None:
        memmove(dst, src, nbytes)
        memset(rp, 0, 8 * nrow)
        for ep, op in row_ptrs:
            predict(ep, 0, op)

    raw.keep = (lib, pristine, entries)  # type: ignore[attr-defined]  # alive with the closure
    return raw, res


def measure(
    fns: dict[str, Callable[[], object]], reps: int, block: int = 50
) -> dict[str, np.ndarray]:
    """Per-call microseconds. Variants run in blocks of `block` calls, the block order rotating
    every round, so machine load and cache state (a variant right after another that ran the
    same predict() code finds it warm) fall on all of them alike."""
    names = list(fns)
    calls = [fns[k] for k in names]
    for _ in range(min(500, reps)):
        for f in calls:
            f()
    rounds = max(1, reps // block)
    t = np.empty((len(calls), rounds * block))
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for k in range(len(calls)):
                j = (k + r) % len(calls)
                f, row, base = calls[j], t[j], r * block
                for i in range(base, base + block):
                    t0 = clock()
                    f()
                    row[i] = clock() - t0
    finally:
        gc.enable()
    return {k: t[j] / 1000.0 for j, k in enumerate(names)}


def run(
    features: int = 40,
    trees: int = 200,
    leaves: int = 31,
    rows: int = 100_000,
    reps: int = 20_000,
    quantize: bool = True,
    parallel_comp: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Train, compile, time; prints the table and returns {variant: {median_us, p99_us, x_raw}}."""
    import lightgbm as lgb
    import tl2cgen

    from app.models.calibration import fit_platt
    from app.models.serving.scoring import CompiledModel
    from app.models.training.compile import compile_model

    x, y = _synthetic(rows, features, seed)
    n_train = int(rows * 0.8)
    print(f"training {trees} trees x {leaves} leaves on {n_train} rows, {features} features")
    t0 = time.monotonic()
    params = {"objective": "binary", "num_leaves": leaves, "verbose": -1, "seed": seed,
              "num_threads": os.cpu_count() or 1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(x[:n_train], y[:n_train]), trees)
    print(f"trained in {time.monotonic() - t0:.1f} s")
    cal = fit_platt(np.asarray(booster.predict(x[n_train:])), y[n_train:].astype(float))
    with tempfile.TemporaryDirectory(prefix="authpilot-bench-") as tmp:
        out = Path(tmp) / "bench" / "v1"
        t0 = time.monotonic()
        compile_model(booster, out, name="bench", version="v1", feature_hash="bench",
                      feature_names=[f"f{i}" for i in range(features)], calibration=cal,
                      test_matrix=x[n_train:], annotate_matrix=x[:20_000], quantize=quantize,
                      parallel_comp=parallel_comp)  # fmt: skip
        print(f"compiled in {time.monotonic() - t0:.1f} s (includes one verified load)")
        t0 = time.monotonic()
        model = CompiledModel(out, "bench")
        t_load = time.monotonic() - t0
        t0 = time.monotonic()
        CompiledModel(out, "bench", probe=False).close()
        t_noprobe = time.monotonic() - t0
        print(f"load + verify: {t_load * 1e3:.0f} ms ({t_noprobe * 1e3:.0f} ms without the probe)")

        req = np.ascontiguousarray(x[n_train : n_train + 4])
        req[1, 3] = np.nan  # a missing value in the request
        nf = features
        cap = 4 * max(BATCHES)
        pbuf = np.empty(cap)
        xbuf = np.full((cap, nf), np.nan)  # the score agent's preallocated feature buffer
        xbuf[:4] = req
        xbuf[4:cap] = x[n_train + 4 : n_train + cap]  # further requests for the batches
        offsets = np.arange(0, cap + 1, 4, dtype=np.int32)  # request i: rows 4i .. 4i+4
        want = cal.apply(np.asarray(booster.predict(req)))

        raw, res = raw_reference(out / "model.so", req)
        predict = raw.keep[0].predict  # type: ignore[attr-defined]  # (a3) calls it per row
        raw()
        assert np.max(np.abs(res - booster.predict(req))) < 1e-9, "raw reference is wrong"

        # (a2) the core uncalibrated + Platt in numpy, in place
        a, b = cal.a, cal.b
        o4 = pbuf[:4]

        def core_numpy_cal() -> None:
            model.predict_raw(req, pbuf)
            np.clip(o4, 1e-6, 1 - 1e-6, out=o4)
            np.divide(o4, np.subtract(1.0, o4, out=tmp4), out=o4)
            np.log(o4, out=o4)
            np.multiply(o4, -a, out=o4)
            np.subtract(o4, b, out=o4)
            np.exp(o4, out=o4)
            np.add(o4, 1.0, out=o4)
            np.reciprocal(o4, out=o4)

        tmp4 = np.empty(4)

        # (a3) per-row ctypes: numpy encodes the Entry buffer, guard included
        ebuf = np.empty((64, nf))
        ebits = ebuf.view(np.uint64)
        ebits_i = ebuf.view(np.int64)
        nanmask = np.empty((64, nf), dtype=bool)
        lowmask = np.empty((64, nf), dtype=np.uint64)
        hitmask = np.empty((64, nf), dtype=bool)
        r4 = np.zeros(4)
        rp4 = r4.ctypes.data
        eptrs = [(ebuf.ctypes.data + 8 * nf * r, rp4 + 8 * r) for r in range(4)]
        low32 = np.uint64(0xFFFFFFFF)

        def per_row() -> None:
            n = 4
            e, bits, nm, lm, hm = ebuf[:n], ebits[:n], nanmask[:n], lowmask[:n], hitmask[:n]
            np.copyto(e, req)
            np.bitwise_and(bits, low32, out=lm)
            np.equal(lm, low32, out=hm)
            np.subtract(bits, hm, out=bits, casting="unsafe")  # guard: one ulp toward zero
            np.isnan(req, out=nm)
            np.copyto(ebits_i[:n], -1, where=nm)  # missing = -1 (whole word: low word is -1)
            r4[:] = 0.0
            for ep, op in eptrs:
                predict(ep, 0, op)
            cal.apply(r4, out=o4)

        shim, cal_ptr = model._fn, model._cal_ptr
        # ndarrays implement the buffer protocol; numpy's stubs do not declare it
        xp = ctypes.c_double.from_buffer(xbuf)  # type: ignore[arg-type]
        op = ctypes.c_double.from_buffer(pbuf)  # type: ignore[arg-type]

        pred = tl2cgen.Predictor(str(out / "model.so"), nthread=1, verbose=False)
        checks = {
            "(a) scoring core": lambda: model.score_many(xbuf, pbuf, 4),
            "(a1) core, a new x[:4] view per call": lambda: model.score_many(xbuf[:4], pbuf),
            "(a2) core + numpy calibration": core_numpy_cal,
            "(a3) per-row ctypes, numpy encode": per_row,
        }
        for k, f in checks.items():
            f()
            got = pbuf[:4] if "a3" not in k else o4
            assert np.max(np.abs(got - want)) < 1e-6, f"{k} disagrees with LightGBM"
        p = np.ravel(pred.predict(tl2cgen.DMatrix(req)))
        assert np.max(np.abs(p - booster.predict(req))) < 1e-6
        one = np.empty(4)
        batched = model.score_batch(xbuf, pbuf, offsets, max(BATCHES)).copy()
        for i in range(max(BATCHES)):
            got = model.score_many(np.ascontiguousarray(xbuf[4 * i : 4 * i + 4]), one)
            assert np.array_equal(batched[4 * i : 4 * i + 4], got), "batch != per request"
        batch_fns = {
            f"(e) batch of {k:>2} x 4": (lambda k=k: model.score_batch(xbuf, pbuf, offsets, k))
            for k in BATCHES
        }
        reqs = [xbuf[4 * i : 4 * i + 4].copy() for i in range(cap // 4)]
        xone, pone, copyto = np.empty((4, nf)), np.empty(4), np.copyto

        def singles(k: int) -> None:
            for r in reqs[:k]:
                copyto(xone, r)
                model.score_many(xone, pone, 4)

        single_fns = {f"(f) {k:>2} single calls x 4": partial(singles, k) for k in BATCHES}

        fns: dict[str, Callable[[], object]] = {
            **checks,
            "(b) raw C predict x4 (ref)": raw,
            "(b1) shim call alone, prebuilt ptrs": lambda: shim(xp, 4, nf, op, cal_ptr),
            "(b2) shim call, 0 rows: ctypes cost": lambda: shim(xp, 0, nf, op, cal_ptr),
            "(c) tl2cgen.Predictor": lambda: pred.predict(tl2cgen.DMatrix(req)),
            "(d) Booster.predict": lambda: booster.predict(req, num_threads=1),
            **batch_fns,
            **single_fns,
        }
        print(f"timing {reps} requests per variant, in rotating blocks of 50 ...")
        times = measure(fns, reps)
        model.close()

    ref = float(np.median(times["(b) raw C predict x4 (ref)"]))
    table: dict[str, dict[str, float]] = {}
    print(f"\n{'one request, 4 candidate routes':<36} {'median us':>10} {'p99 us':>9} {'x raw':>7}")
    for k, t in times.items():
        if k in batch_fns or k in single_fns:
            continue
        med, p99 = float(np.median(t)), float(np.percentile(t, 99))
        table[k] = {"median_us": med, "p99_us": p99, "x_raw": med / ref}
        print(f"{k:<36} {med:10.2f} {p99:9.2f} {med / ref:7.2f}")
    core_us = table["(a) scoring core"]["median_us"]
    print(f"\n{'B requests, 4 routes each':<36} {'call us':>10} {'per req':>9} {'x (a)':>7}"
          f" {'x (f)':>7}")  # fmt: skip
    for size, batch_name, single_name in zip(BATCHES, batch_fns, single_fns, strict=True):
        for name in (batch_name, single_name):
            med = float(np.median(times[name]))
            per = med / size
            per_single = float(np.median(times[single_name])) / size
            table[name] = {"median_us": med, "per_request_us": per, "x_core": per / core_us,
                           "x_single_calls": per / per_single}  # fmt: skip
            print(f"{name:<36} {med:10.2f} {per:9.2f} {per / core_us:7.2f} {per / per_single:7.2f}")
    core = table["(a) scoring core"]["x_raw"]
    verdict = "meets" if core <= TARGET_RATIO else "MISSES"
    speedup = table["(d) Booster.predict"]["median_us"] / table["(a) scoring core"]["median_us"]
    print(f"\nscoring core = {core:.2f}x raw C ({verdict} the {TARGET_RATIO}x target); "
          f"{speedup:.1f}x faster than Booster.predict")  # fmt: skip
    return table


if __name__ == "__main__":  # `python -m app.bench.model`: the same as `authpilot bench-model`
    import sys

    from app.cli.main import main

    raise SystemExit(main(["bench-model", *sys.argv[1:]]))
