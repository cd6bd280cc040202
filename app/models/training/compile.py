"""`authpilot compile`: a LightGBM or XGBoost model -> Treelite -> TL2cgen C (+ our batch shim)
-> model.so, in an artifact directory (app.models.artifact describes its files and manifest).

The shim (shim.c beside this module, package data) adds authpilot_score / authpilot_score_batch
to the generated predict(): one ctypes call per request or batch, NaN and the tl2cgen union bug
handled in C, the calibration map applied in C; its header comment says why, with the figures.
compile_model verifies its result with the serving code (CompiledModel: checksums, feature
hash, probe, warm-up) before returning, so a library that disagrees with its trainer is never
left looking valid; `authpilot compile --rebuild DIR` recompiles a version for this machine
from its portable model.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.models.artifact import (
    ANNOTATION,
    DEFAULT_MODEL_FILE,
    ENTRY_POINTS,
    LIBRARY,
    MANIFEST,
    MANIFEST_FORMAT,
    SHIM_ABI,
    WARMUP_ROWS,
    Manifest,
    file_digests,
    read_manifest,
    sha256,
    warmup_vector,
)
from app.models.calibration import Calibration
from app.models.serving.scoring import CompiledModel
from app.models.training.frameworks import FRAMEWORKS, Framework, of_booster, of_file, of_train_dir

SHIM_C = Path(__file__).with_name("shim.c")
_PREDICT_DECL = re.compile(r"void predict\(union Entry\* data, int pred_margin, (\w+)\* result\)")


def shim_source(header: str) -> str:
    """shim.c for generated code whose header.h is `header`: the ABI and predict()'s result
    type defined in front of it."""
    m = _PREDICT_DECL.search(header)
    if m is None or m.group(1) not in ("double", "float"):
        raise ValueError("generated header.h declares no predict(union Entry*, int, T*)")
    return (
        f"#define AUTHPILOT_SHIM_ABI {SHIM_ABI}\n#define AUTHPILOT_RESULT {m.group(1)}\n"
        + SHIM_C.read_text()
    )


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
    8 units with branch annotation 8.7 s; one file at -O2 27 s. Units
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
    # TL2cgen 1.0's quantize.c prints float32 thresholds with 8 significant digits, and a float
    # needs 9 to round-trip: XGBoost's 1039128.0625 became 1039128.1, read back as 1039128.125,
    # and a row at exactly 1039128.0625 took the other branch (compiled 0.5504 vs XGBoost's
    # 0.5562; tests/unit/models/test_train.py's XGBoost comparison). Doubles are printed with 17
    # digits, so LightGBM models keep the quantized (~15% faster) code.
    quantize = quantize and str(model.input_type) != "float32"
    params: dict[str, Any] = {"parallel_comp": int(pc), "quantize": int(bool(quantize))}
    ann_target = out_dir / ANNOTATION
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
        tmp_so = out_dir / f".{LIBRARY}.tmp"
        shutil.copyfile(lib, tmp_so)
        os.replace(tmp_so, out_dir / LIBRARY)  # a new inode: dlopen never sees a half file
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


def _write_manifest(out_dir: Path, manifest: Manifest) -> Path:
    """Write out_dir/manifest.json atomically (the artifact's commit point)."""
    path = out_dir / MANIFEST
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, allow_nan=False))
    os.replace(tmp, path)
    return path


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
) -> Path:
    """Build out_dir (= compiled_models/<name>/<version>) and return its manifest path.

    booster_or_model_file: a trained lightgbm.Booster or xgboost.Booster, or a LightGBM text
    (.txt) or XGBoost JSON (.json) model file; the portable model is kept in out_dir as
    model.txt or model.json. test_matrix: rows for the warm-up vector, whose expected outputs
    are the training library's own calibrated predictions, so the check at load compares the
    compiled library with LightGBM/XGBoost rather than with itself.
    training_window: JSON-able, e.g. [start_ms, end_ms].
    verify: load the result with CompiledModel (checksums, feature hash, probe, warm-up)
    before returning, so a library that disagrees with its trainer is never left looking valid.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # invalid until the new one is written
    given = booster_or_model_file
    fw: Framework = of_file(Path(given)) if isinstance(given, str | Path) else of_booster(given)
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
    rows = _warmup_rows(test_matrix, len(feature_names))
    expected = cal.apply(fw.predict(booster, rows))
    manifest: Manifest = {
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
        "entry_points": dict(ENTRY_POINTS),
        "missing": "NaN in the input; Entry.missing = -1 in the generated code",
        "guard": guard,
        "calibration": None if cal.kind == "none" else cal.to_dict(),
        "metrics": metrics or {},
        "training_window": training_window,
        "training_window_ms": training_window,
        "build": build,
        "library_versions": _versions(),
        "test_vector": warmup_vector(rows, expected),
        "files": file_digests(out_dir),
    }
    path = _write_manifest(out_dir, manifest)
    if verify:
        _verify(out_dir, feature_hash)
    return path


def _verify(out_dir: Path, feature_hash: str) -> None:
    CompiledModel(out_dir, feature_hash).close()


def rebuild(out_dir: str | Path) -> Path:
    """Recompile out_dir/model.so from its portable model for this machine (the Docker build
    step): same TL2cgen parameters and annotation, new library versions and checksums; the
    manifest's warm-up vector (the trainer's outputs) must still pass. Refuses a directory whose
    files do not match its manifest: a rebuild must not bless a tampered model."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    for rel, digest in manifest["files"].items():
        if rel != LIBRARY and sha256(out_dir / rel) != digest:
            raise ValueError(f"{out_dir}/{rel} differs from its manifest; not rebuilding")
    prev = manifest.get("build", {})
    params = prev.get("tl2cgen_params", {})
    ann = out_dir / ANNOTATION
    manifest["build"] = build_library(
        out_dir / manifest.get("model_file", DEFAULT_MODEL_FILE),
        out_dir,
        parallel_comp=params.get("parallel_comp"),
        quantize=bool(params.get("quantize", 1)),
        annotation=ann if ann.is_file() else None,
    )
    manifest["library_versions"] = _versions()
    manifest["files"] = file_digests(out_dir)
    path = _write_manifest(out_dir, manifest)
    _verify(out_dir, manifest["feature_hash"])
    return path


_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def compile_from_train_dir(
    train_dir: Path,
    root: Path,
    *,
    matrix: Path | None = None,
    name: str | None = None,
    version: str | None = None,
    parallel_comp: int | None = None,
    quantize: bool = True,
) -> Path:
    """compile_model over an `authpilot train --out` directory into root/<name>/<version>;
    returns the manifest path. name and version default to the trainer's (metrics.json);
    matrix supplies the warm-up rows and the branch annotation. ValueError, before anything is
    written, for a name or version that is not a path-safe word or a model trained on other
    feature definitions than this code's."""
    import pandas as pd

    from app.features.definitions import FEATURE_NAMES, feature_hash

    summary = json.loads((train_dir / "metrics.json").read_text())
    model_file = train_dir / of_train_dir(train_dir).model_file
    name, version = name or summary["name"], version or summary["version"]
    for label, v in (("name", name), ("version", version)):
        if not _VERSION_RE.match(str(v)):
            raise ValueError(f"{label} {v!r} must be letters, digits, '.', '_' or '-'")
    if summary["feature_hash"] != feature_hash():
        raise ValueError("model was trained on other feature definitions")
    rows = ann = None
    if matrix is not None:
        df = pd.read_parquet(matrix, columns=list(FEATURE_NAMES))
        rows = df.tail(8).to_numpy(float)
        ann = df.sample(min(len(df), 200_000), random_state=0).to_numpy(float)
    cal_file = train_dir / "calibration.json"
    return compile_model(
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
        parallel_comp=parallel_comp,
        quantize=quantize,
    )
