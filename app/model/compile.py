"""`authpilot compile`: a trained model -> Treelite -> TL2cgen C -> a shared library + manifest.

The library carries one extra entry point next to TL2cgen's `predict`: authpilot_score scores
and calibrates n rows of a dense float64 matrix (NaN = missing) in one call, so a request with
k candidate routes costs one ctypes call instead of k, and it applies the guard against the
tl2cgen 1.0.0 union bug (an int `missing` overlapping the double: a value whose low 32 bits are
all ones would read as missing; it is nudged one ulp toward zero, a relative change of 2^-52).

compiled_models/<name>/<version>/ holds model.so, model.txt (the portable LightGBM model the
library is rebuilt from on another platform), src/ and manifest.json with the sha256 of every
file, the feature names/order/hash, the calibration map and a warm-up test vector.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from app.model.calibration import Calibration

SHIM = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "header.h"

static inline double authpilot_guard(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0xffffffffULL) == 0xffffffffULL) {  /* would alias Entry.missing == -1 */
    u -= 1;                                     /* one ulp toward zero */
    memcpy(&x, &u, sizeof x);
  }
  return x;
}

/* Calibration in C, the same maps as app.model.calibration (kind 0 none, 1 isotonic knots
   with np.interp semantics, 2 Platt on the clipped logit): in numpy it cost more than the trees. */
static double authpilot_calibrate(double p, int kind, double a, double b,
                                  const double* kx, const double* ky, int nk) {
  if (kind == 2) {
    double q = p < 1e-6 ? 1e-6 : (p > 1 - 1e-6 ? 1 - 1e-6 : p);
    double z = a * log(q / (1 - q)) + b;
    return 1.0 / (1.0 + exp(-z));
  }
  if (kind == 1 && nk > 0) {
    if (p <= kx[0]) return ky[0];
    if (p >= kx[nk - 1]) return ky[nk - 1];
    int lo = 0, hi = nk - 1;               /* kx[lo] <= p < kx[hi] */
    while (hi - lo > 1) { int mid = (lo + hi) / 2; if (kx[mid] <= p) lo = mid; else hi = mid; }
    double dx = kx[hi] - kx[lo];
    return dx > 0 ? ky[lo] + (p - kx[lo]) * (ky[hi] - ky[lo]) / dx : ky[hi];
  }
  return p;
}

/* Score n rows of X (row-major, nf columns, NaN = missing) into out, calibrated; returns 0,
   or -1 when nf does not match the model. */
int authpilot_score(const double* X, int n, int nf, double* out, int kind, double a, double b,
                    const double* kx, const double* ky, int nk) {
  if (nf != get_num_feature()) return -1;
  union Entry row[nf];
  for (int r = 0; r < n; ++r) {
    const double* x = X + (size_t)r * nf;
    for (int j = 0; j < nf; ++j) {
      if (isnan(x[j])) row[j].missing = -1;
      else row[j].fvalue = authpilot_guard(x[j]);
    }
    double res[1] = {0.0};  /* predict() accumulates into result */
    predict(row, 0, res);
    out[r] = authpilot_calibrate(res[0], kind, a, b, kx, ky, nk);
  }
  return 0;
}
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_library(model_txt: Path, out_dir: Path) -> Path:
    """Generate C with TL2cgen from a LightGBM model file and compile it with gcc."""
    import tl2cgen
    import treelite

    model = treelite.frontend.load_lightgbm_model(str(model_txt))
    src = out_dir / "src"
    shutil.rmtree(src, ignore_errors=True)
    tl2cgen.generate_c_code(model, str(src), params={})
    (src / "authpilot_batch.c").write_text(SHIM)
    lib = out_dir / "model.so"
    cmd = ["gcc", "-O2", "-fPIC", "-shared", "-std=c99", "-o", str(lib)]
    cmd += sorted(str(p) for p in src.glob("*.c")) + ["-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"gcc failed:\n{res.stderr[-3000:]}")
    return lib


def _versions() -> dict[str, str]:
    import lightgbm
    import tl2cgen
    import treelite

    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    return {
        "lightgbm": lightgbm.__version__,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
        "gcc": gcc.splitlines()[0] if gcc else "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def compile_model(model_txt: Path, out_dir: Path, *, name: str, version: str,
                  feature_names: list[str], feature_hash: str, calibration: Calibration,
                  test_rows: np.ndarray, metrics: dict[str, Any] | None = None,
                  training_window_ms: list[int] | None = None) -> Path:  # fmt: skip
    """Build out_dir (compiled_models/<name>/<version>) and return its manifest path."""
    import lightgbm as lgb

    out_dir.mkdir(parents=True, exist_ok=True)
    if model_txt.resolve() != (out_dir / "model.txt").resolve():
        shutil.copyfile(model_txt, out_dir / "model.txt")
    build_library(out_dir / "model.txt", out_dir)
    booster = lgb.Booster(model_file=str(out_dir / "model.txt"))
    if booster.num_feature() != len(feature_names):
        raise ValueError(f"model has {booster.num_feature()} features, {len(feature_names)} named")
    rows = np.ascontiguousarray(test_rows[:16], dtype=np.float64)
    expected = calibration.apply(booster.predict(rows))
    files = {
        str(p.relative_to(out_dir)): sha256(p)
        for p in sorted(out_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = {
        "name": name,
        "version": version,
        "num_feature": len(feature_names),
        "feature_names": list(feature_names),
        "feature_hash": feature_hash,
        "calibration": calibration.to_dict(),
        "metrics": metrics or {},
        "training_window_ms": training_window_ms,
        "library_versions": _versions(),
        "test_vector": {
            "rows": [[None if v != v else float(v) for v in r] for r in rows],
            "expected": expected.tolist(),
        },
        "files": files,
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def main(argv: list[str]) -> int:
    """`authpilot compile --model DIR --name N --version V [--matrix FILE] [--out ROOT]`"""
    import pandas as pd

    from app.config import get_settings
    from app.features.definitions import FEATURE_NAMES, feature_hash

    p = argparse.ArgumentParser(prog="authpilot compile")
    p.add_argument("--model", type=Path, required=True, help="an `authpilot train --out` dir")
    p.add_argument("--matrix", type=Path, help="training matrix: warm-up rows come from it")
    p.add_argument("--name", default=None)
    p.add_argument("--version", default=None)
    p.add_argument("--out", type=Path, default=None, help="default: AUTHPILOT_MODEL_DIR")
    a = p.parse_args(argv)
    summary = json.loads((a.model / "metrics.json").read_text())
    name, version = a.name or summary["name"], a.version or summary["version"]
    if summary["feature_hash"] != feature_hash():
        print("model was trained on other feature definitions", file=sys.stderr)
        return 2
    if a.matrix:
        rows = pd.read_parquet(a.matrix, columns=list(FEATURE_NAMES)).tail(16).to_numpy(float)
    else:
        rows = np.random.default_rng(0).random((16, len(FEATURE_NAMES)))
    root = a.out or get_settings().model_dir
    manifest = compile_model(
        a.model / "model.txt",
        root / name / version,
        name=name,
        version=version,
        feature_names=list(FEATURE_NAMES),
        feature_hash=summary["feature_hash"],
        calibration=Calibration.from_dict(json.loads((a.model / "calibration.json").read_text())),
        test_rows=rows,
        metrics=summary.get("metrics_test"),
        training_window_ms=summary.get("training_window_ms"),
    )
    print(f"compiled {name}/{version} -> {manifest.parent}")
    return 0
