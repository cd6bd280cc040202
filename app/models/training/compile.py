"""`authpilot compile`: a LightGBM or XGBoost model -> Treelite -> TL2cgen C (+ our batch shim)
-> model.so.

compiled_models/<name>/<version>/ holds model.so, the portable model the library is rebuilt from
on another platform (`authpilot compile --rebuild DIR`): model.txt (LightGBM) or model.json
(XGBoost), annotation.json when branches were annotated, and manifest.json (written last,
atomically: it is the commit point) with the sha256 of every other file, the trainer, the
feature names/order/hash, the calibration map, the build parameters, library versions and a
warm-up test vector that a loader scores and compares against the training library's own
outputs (see app.models.serving.scoring).

Why a shim next to TL2cgen's generated `predict(union Entry*, int pred_margin, double*)`:
- one ctypes call per request instead of one per candidate route (a ctypes call with pointer
  conversion costs ~1-2 us here, the trees for one row ~2-3 us for 200 trees x 31 leaves);
- the missing-value encoding (NaN -> Entry.missing = -1, the generated code tests
  `data[j].missing != -1`) and the guard against the tl2cgen 1.0.0 union bug are done in C;
- the calibration map is applied in C: numpy's np.interp allocates its result on every call
  and the Platt map is 6 ufunc calls (~4 us for 4 rows), more than a third of the trees' time.

The union bug: `union Entry { int missing; double fvalue; int qvalue; }` lets a valid double
whose low 32 bits are 0xffffffff read as missing. The shim nudges such a value one ulp toward
zero (bits - 1, a relative change of 2^-52). That is exact unless a split threshold equals the
value or its nudged neighbour, i.e. a threshold whose low word is 0xffffffff or 0xfffffffe;
compile counts those (chance ~2^-31 per threshold) and records it in the manifest's `guard`.

XGBoost models keep Treelite's float32 types (`union Entry { int; float; int; }`, float leaves
and result): XGBoost itself compares float32(x) with float32 thresholds, so a float64 build
would route values between a threshold and its float32 rounding differently. The shim is
generated for the result type the code declares; a float Entry cannot alias `missing` (0xffffffff
as a float is a NaN, which the shim encodes as missing anyway), so the guard only runs for
double entries.

authpilot_score_batch scores k requests whose rows are concatenated (request i owns rows
offsets[i] .. offsets[i+1]) in one call; per row the work is authpilot_score's, so results are
identical, and the offsets are validated in C where it costs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.models.calibration import Calibration
from app.models.training.frameworks import FRAMEWORKS, Framework, of_booster, of_file, of_train_dir
from app.models.training.frameworks import split_thresholds as split_thresholds  # re-exported

MANIFEST_FORMAT = 2
SHIM_ABI = 3  # 3: authpilot_score_batch; float32 (XGBoost) builds
WARMUP_ROWS = 12

SHIM = r"""
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "header.h"

/* Calibration map, the same as app.models.calibration.Calibration.apply: kind 0 none,
   1 isotonic knots with np.interp semantics, 2 Platt on the clipped logit. */
struct authpilot_cal {
  int32_t kind;
  int32_t nk;
  double a;
  double b;
  const double* kx;
  const double* ky;
};

int32_t authpilot_abi(void) { return @ABI@; }
int32_t authpilot_entry_size(void) { return (int32_t)sizeof(union Entry); }

typedef @RESULT@ authpilot_result_t; /* predict()'s result type: double, float for XGBoost */

static inline double authpilot_guard(double x) {
  if (sizeof(union Entry) != 8) return x; /* a float Entry cannot alias missing == -1 */
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0xffffffffULL) == 0xffffffffULL) { /* would alias Entry.missing == -1 */
    u -= 1;                                    /* one ulp toward zero */
    memcpy(&x, &u, sizeof x);
  }
  return x;
}

static double authpilot_calibrate(double p, const struct authpilot_cal* c) {
  if (c == NULL) return p;
  if (c->kind == 2) {
    double q = p < 1e-6 ? 1e-6 : (p > 1 - 1e-6 ? 1 - 1e-6 : p);
    double z = c->a * log(q / (1 - q)) + c->b;
    return 1.0 / (1.0 + exp(-z));
  }
  if (c->kind == 1 && c->nk > 0) {
    const double* kx = c->kx;
    const double* ky = c->ky;
    int nk = c->nk;
    /* np.interp: clamp outside the knots; else lo = the last knot <= p, exact hits (the last
       of equal knots) return its value, otherwise interpolate towards lo + 1. */
    if (p < kx[0]) return ky[0];
    if (p >= kx[nk - 1]) return ky[nk - 1];
    int lo = 0, hi = nk - 1; /* kx[lo] <= p < kx[hi] */
    while (hi - lo > 1) {
      int mid = lo + (hi - lo) / 2;
      if (kx[mid] <= p) lo = mid; else hi = mid;
    }
    if (kx[lo] == p) return ky[lo];
    double slope = (ky[lo + 1] - ky[lo]) / (kx[lo + 1] - kx[lo]); /* np.interp's order */
    return slope * (p - kx[lo]) + ky[lo];
  }
  return p;
}

/* Score n rows of X (row-major, nf float64 columns, NaN = missing) into out: the probability
   (pred_margin = 0 applies the model's sigmoid), then the calibration map when cal != NULL.
   Returns 0, or -1 when nf is not the model's feature count. Reentrant: the Entry row lives
   on this call's stack (predict() may quantize it in place). */
int32_t authpilot_score(const double* X, int32_t n, int32_t nf, double* out,
                        const struct authpilot_cal* cal) {
  if (nf != get_num_feature() || n < 0) return -1;
  union Entry row[nf > 0 ? nf : 1];
  for (int32_t r = 0; r < n; ++r) {
    const double* x = X + (size_t)r * (size_t)nf;
    for (int32_t j = 0; j < nf; ++j) {
      if (isnan(x[j])) row[j].missing = -1;
      else row[j].fvalue = authpilot_guard(x[j]); /* (float) rounds as XGBoost does */
    }
    authpilot_result_t res[1] = {0}; /* predict() accumulates into result */
    predict(row, 0, res);
    out[r] = authpilot_calibrate((double)res[0], cal);
  }
  return 0;
}

/* k requests in one call: request i's rows are X[offsets[i] .. offsets[i+1]) (rows
   concatenated), its probabilities out[offsets[i] .. offsets[i+1]). Returns 0, or -1 when
   offsets[0] != 0, the offsets decrease, or nf is wrong; nothing is written then. */
int32_t authpilot_score_batch(const double* X, const int32_t* offsets, int32_t k, int32_t nf,
                              double* out, const struct authpilot_cal* cal) {
  if (k < 0 || offsets[0] != 0) return -1;
  for (int32_t i = 0; i < k; ++i) {
    if (offsets[i + 1] < offsets[i]) return -1;
  }
  return authpilot_score(X, offsets[k], nf, out, cal);
}
"""

_PREDICT_DECL = re.compile(r"void predict\(union Entry\* data, int pred_margin, (\w+)\* result\)")


def shim_source(header: str) -> str:
    """The shim for generated code whose header.h is `header`: its predict() result type."""
    m = _PREDICT_DECL.search(header)
    if m is None or m.group(1) not in ("double", "float"):
        raise ValueError("generated header.h declares no predict(union Entry*, int, T*)")
    return SHIM.replace("@ABI@", str(SHIM_ABI)).replace("@RESULT@", m.group(1))


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(out_dir: Path) -> dict[str, str]:
    """sha256 of every file under out_dir except the manifest itself (relative POSIX paths)."""
    return {
        p.relative_to(out_dir).as_posix(): sha256(p)
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".")
    }


def guard_report(thresholds: np.ndarray) -> dict[str, Any]:
    """Whether the one-ulp nudge can change any split: it can only if a threshold equals a
    colliding value (low word 0xffffffff) or its nudged neighbour (low word 0xfffffffe)."""
    low = np.ascontiguousarray(thresholds, dtype=np.float64).view(np.uint64) & 0xFFFFFFFF
    risky = int(np.count_nonzero((low == 0xFFFFFFFF) | (low == 0xFFFFFFFE)))
    return {
        "rule": "a double whose low 32 bits are all ones is moved one ulp toward zero",
        "thresholds_checked": len(thresholds),
        "risky_thresholds": risky,
        "exact": risky == 0,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import tl2cgen
    import treelite

    try:
        gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    except OSError:
        gcc = ""
    libs = {}
    for pkg in FRAMEWORKS:  # without importing them: xgboost alone takes ~0.5 s
        try:
            libs[pkg] = version(pkg)
        except PackageNotFoundError:
            libs[pkg] = "not installed"
    return {
        **libs,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
        "gcc": gcc.splitlines()[0] if gcc else "unknown",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def default_parallel_comp(num_trees: int) -> int:
    """Translation units for TL2cgen: ~25 trees each, at most 16. Measured on this (shared,
    2-core) machine for 200 trees x 31 leaves: one file at -O3 15.3 s, 8 units 14.3 s,
    8 units with branch annotation 8.7 s; the old single-file -O2 build took 27 s. Units
    let create_shared use every core, and keep gcc's per-function cost (superlinear in
    function size) down."""
    return max(1, min(16, num_trees // 25))


def build_library(
    model_file: Path,
    out_dir: Path,
    *,
    parallel_comp: int | None = None,
    quantize: bool = True,
    annotation: Path | None = None,
    annotate_matrix: np.ndarray | None = None,
    nthread: int | None = None,
) -> dict[str, Any]:
    """Generate C with TL2cgen from a portable LightGBM (.txt) or XGBoost (.json) model, add
    the shim, compile with tl2cgen.create_shared(gcc, -O3) into out_dir/model.so; returns the
    build record for the manifest.

    This is tl2cgen.export_lib split in its two documented steps so the shim can join the
    sources. quantize=1 compares integer bin indices instead of doubles: per request of 4
    rows on the benchmark model 9.8 us vs 11.6 us without (and 8.9 vs 11.1 in a
    microbenchmark; a busy machine, so take it as ~15%). annotate_matrix (training rows) writes
    out_dir/annotation.json with tl2cgen.annotate_branch so the C compiler gets
    LIKELY/UNLIKELY hints; a rebuild reuses the saved annotation.
    """
    import tl2cgen

    t0 = time.monotonic()
    model = of_file(model_file).treelite(model_file)
    pc = parallel_comp if parallel_comp is not None else default_parallel_comp(model.num_tree)
    params: dict[str, Any] = {"parallel_comp": int(pc), "quantize": int(bool(quantize))}
    ann_target = out_dir / "annotation.json"
    if annotate_matrix is not None:
        dmat = tl2cgen.DMatrix(np.ascontiguousarray(annotate_matrix, dtype=np.float64))
        tl2cgen.annotate_branch(model, dmat, str(ann_target), nthread=nthread or 0)
        annotation = ann_target
    elif annotation is not None and annotation.resolve() != ann_target.resolve():
        shutil.copyfile(annotation, ann_target)
        annotation = ann_target
    if annotation is not None:
        params["annotate_in"] = str(annotation)
    with tempfile.TemporaryDirectory(prefix="authpilot-build-") as tmp:
        src = Path(tmp) / "src"
        tl2cgen.generate_c_code(model, str(src), params=params)
        shim = shim_source((src / "header.h").read_text())
        (src / "authpilot_shim.c").write_text(shim)
        recipe = json.loads((src / "recipe.json").read_text())
        recipe["sources"].append({"name": "authpilot_shim", "length": shim.count("\n")})
        (src / "recipe.json").write_text(json.dumps(recipe))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the long-source warning: parallel_comp is set
            lib = tl2cgen.create_shared("gcc", str(src), nthread=nthread or os.cpu_count() or 1)
        tmp_so = out_dir / ".model.so.tmp"
        shutil.copyfile(lib, tmp_so)
        os.replace(tmp_so, out_dir / "model.so")  # a new inode: dlopen never sees a half file
    return {
        "tl2cgen_params": {k: v for k, v in params.items() if k != "annotate_in"},
        "annotated": annotation is not None,
        "toolchain": "gcc",
        "compiler_flags": "-O3 -fPIC -std=c99 (tl2cgen.create_shared)",
        "shim_abi": SHIM_ABI,
        "threshold_type": str(model.input_type),
        "num_tree": int(model.num_tree),
        "seconds": round(time.monotonic() - t0, 2),
    }


def _warmup_rows(x: np.ndarray | None, nf: int) -> np.ndarray:
    """Warm-up inputs: up to 8 given rows, one row all missing, one with some NaNs and one
    holding a union-bug collision value in every column, so a loader's check covers the
    missing convention and the guard as well as the trees."""
    rng = np.random.default_rng(0)
    base = (
        np.ascontiguousarray(x[:8], dtype=np.float64)
        if x is not None and len(x)
        else rng.normal(size=(8, nf))
    )
    if base.ndim != 2 or base.shape[1] != nf:
        raise ValueError(f"test matrix has shape {base.shape}, the model {nf} features")
    nan_row = np.full((1, nf), np.nan)
    some_nan = base[:1].copy()
    some_nan[0, ::2] = np.nan
    collide = np.nan_to_num(base[1:2].copy(), nan=0.5)
    bits = collide.view(np.uint64)
    bits |= np.uint64(0xFFFFFFFF)
    collide[~np.isfinite(collide)] = 0.5000000000000001  # never NaN/inf after the OR
    rows = np.vstack([base, nan_row, some_nan, collide])
    return np.ascontiguousarray(rows[:WARMUP_ROWS])


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=False))
    os.replace(tmp, path)


def _rows_to_json(rows: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in r] for r in rows]


def compile_model(
    booster_or_model_file: Any,
    out_dir: str | Path,
    *,
    feature_names: Sequence[str],
    feature_hash: str,
    name: str,
    version: str,
    calibration: Calibration | dict[str, Any] | None = None,
    test_matrix: np.ndarray | None = None,
    metrics: dict[str, Any] | None = None,
    training_window: Any = None,
    annotate_matrix: np.ndarray | None = None,
    parallel_comp: int | None = None,
    quantize: bool = True,
    verify: bool = True,
    test_rows: np.ndarray | None = None,
    training_window_ms: list[int] | None = None,
) -> Path:
    """Build out_dir (= compiled_models/<name>/<version>) and return its manifest path.

    booster_or_model_file: a trained lightgbm.Booster or xgboost.Booster, or a LightGBM text
    (.txt) or XGBoost JSON (.json) model file; the portable model is kept in out_dir as
    model.txt or model.json. test_matrix (alias test_rows): rows for the warm-up vector, whose
    expected outputs are the training library's own calibrated predictions, so the check at
    load compares the compiled library with LightGBM/XGBoost rather than with itself.
    training_window (alias training_window_ms): JSON-able, e.g. [start_ms, end_ms].
    verify: load the result with CompiledModel (checksums, feature hash, probe, warm-up)
    before returning, so a library that disagrees with its trainer is never left looking valid.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # invalid until the new one is written
    given = booster_or_model_file
    fw: Framework = of_file(given) if isinstance(given, str | Path) else of_booster(given)
    model_file = out_dir / fw.model_file
    if not isinstance(given, str | Path):
        fw.save(given, model_file)
    elif Path(given).resolve() != model_file.resolve():
        shutil.copyfile(given, model_file)
    booster = fw.load(model_file)
    if fw.num_feature(booster) != len(feature_names):
        raise ValueError(
            f"model has {fw.num_feature(booster)} features, {len(feature_names)} named"
        )
    cal = (
        calibration if isinstance(calibration, Calibration) else Calibration.from_dict(calibration)
    )
    guard = guard_report(fw.thresholds(model_file))
    if not guard["exact"]:
        warnings.warn(
            f"{guard['risky_thresholds']} split threshold(s) sit next to a union-bug "
            "collision value: the guard may flip those splits for that exact input",
            stacklevel=2,
        )
    build = build_library(
        model_file,
        out_dir,
        parallel_comp=parallel_comp,
        quantize=quantize,
        annotate_matrix=annotate_matrix,
    )
    tm = test_matrix if test_matrix is not None else test_rows
    rows = _warmup_rows(tm, len(feature_names))
    expected = cal.apply(fw.predict(booster, rows))
    window = training_window if training_window is not None else training_window_ms
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "created_at_ms": int(time.time() * 1000),
        "num_feature": len(feature_names),
        "feature_names": list(feature_names),
        "feature_hash": feature_hash,
        "objective": "binary",
        "trainer": fw.name,
        "model_file": fw.model_file,
        "threshold_type": build["threshold_type"],
        "output": "calibrated probability (sigmoid of the margin, then the calibration map)",
        "entry_points": {
            "batch": "authpilot_score",
            "predict": "predict",
            "num_feature": "get_num_feature",
            "abi": "authpilot_abi",
        },
        "missing": "NaN in the input; Entry.missing = -1 in the generated code",
        "guard": guard,
        "calibration": None if cal.kind == "none" else cal.to_dict(),
        "metrics": metrics or {},
        "training_window": window,
        "training_window_ms": window,
        "build": build,
        "library_versions": _versions(),
        "test_vector": {"rows": _rows_to_json(rows), "expected": expected.tolist(), "atol": 1e-6},
        "files": file_digests(out_dir),
    }
    path = out_dir / "manifest.json"
    _write_json_atomic(path, manifest)
    if verify:
        _verify(out_dir, feature_hash)
    return path


def _verify(out_dir: Path, feature_hash: str) -> None:
    from app.models.serving.scoring import CompiledModel

    CompiledModel(out_dir, feature_hash).close()


def rebuild(out_dir: str | Path) -> Path:
    """Recompile out_dir/model.so from its portable model for this machine (the Docker build
    step): same TL2cgen parameters and annotation, new library versions and checksums; the
    manifest's warm-up vector (the trainer's outputs) must still pass. Refuses a directory whose
    files do not match its manifest: a rebuild must not bless a tampered model."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    for rel, digest in manifest["files"].items():
        if rel != "model.so" and sha256(out_dir / rel) != digest:
            raise ValueError(f"{out_dir}/{rel} differs from its manifest; not rebuilding")
    prev = manifest.get("build", {})
    params = prev.get("tl2cgen_params", {})
    ann = out_dir / "annotation.json"
    manifest["build"] = build_library(
        out_dir / manifest.get("model_file", "model.txt"),  # format 2 before XGBoost: model.txt
        out_dir,
        parallel_comp=params.get("parallel_comp"),
        quantize=bool(params.get("quantize", 1)),
        annotation=ann if ann.is_file() else None,
    )
    manifest["library_versions"] = _versions()
    manifest["files"] = file_digests(out_dir)
    path = out_dir / "manifest.json"
    _write_json_atomic(path, manifest)
    _verify(out_dir, manifest["feature_hash"])
    return path


_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def main(argv: list[str]) -> int:
    """`authpilot compile --model DIR [--matrix FILE] [--name N] [--version V] [--out ROOT]`
    or `authpilot compile --rebuild DIR` (recompile an existing version for this machine)."""
    p = argparse.ArgumentParser(prog="authpilot compile")
    p.add_argument("--model", type=Path, help="an `authpilot train --out` dir")
    p.add_argument(
        "--rebuild",
        type=Path,
        metavar="DIR",
        help="recompile compiled_models/<name>/<version> in place from its portable model",
    )
    p.add_argument("--matrix", type=Path, help="training matrix: warm-up rows and annotation")
    p.add_argument("--name", default=None)
    p.add_argument("--version", default=None)
    p.add_argument("--out", type=Path, default=None, help="default: AUTHPILOT_MODEL_DIR")
    p.add_argument("--parallel-comp", type=int, default=None)
    p.add_argument("--no-quantize", action="store_true")
    a = p.parse_args(argv)
    if a.rebuild is not None:
        try:
            path = rebuild(a.rebuild)
        except Exception as exc:  # reported, not a traceback: this runs in a Docker build
            print(f"rebuild of {a.rebuild} failed: {exc}", file=sys.stderr)
            return 1
        print(f"rebuilt {path.parent} for {platform.machine()}")
        return 0
    if a.model is None:
        p.error("--model or --rebuild is required")
    return _compile_from_train_dir(a)


def _compile_from_train_dir(a: argparse.Namespace) -> int:
    import pandas as pd

    from app.config import get_settings
    from app.features.definitions import FEATURE_NAMES, feature_hash

    summary = json.loads((a.model / "metrics.json").read_text())
    model_file = a.model / of_train_dir(a.model).model_file
    name, version = a.name or summary["name"], a.version or summary["version"]
    for label, v in (("name", name), ("version", version)):
        if not _VERSION_RE.match(str(v)):
            print(f"{label} {v!r} must be letters, digits, '.', '_' or '-'", file=sys.stderr)
            return 2
    if summary["feature_hash"] != feature_hash():
        print("model was trained on other feature definitions", file=sys.stderr)
        return 2
    rows = ann = None
    if a.matrix:
        df = pd.read_parquet(a.matrix, columns=list(FEATURE_NAMES))
        rows = df.tail(8).to_numpy(float)
        ann = df.sample(min(len(df), 200_000), random_state=0).to_numpy(float)
    root = a.out or get_settings().model_dir
    cal_file = a.model / "calibration.json"
    manifest = compile_model(
        model_file,
        root / name / version,
        name=name,
        version=version,
        feature_names=list(FEATURE_NAMES),
        feature_hash=summary["feature_hash"],
        calibration=json.loads(cal_file.read_text()) if cal_file.exists() else None,
        test_matrix=rows,
        metrics=summary.get("metrics_test"),
        training_window=summary.get("training_window_ms"),
        annotate_matrix=ann,
        parallel_comp=a.parallel_comp,
        quantize=not a.no_quantize,
    )
    print(f"compiled {name}/{version} -> {manifest.parent}")
    return 0
