"""The compiled-model artifact: the only contract between compile (build) and scoring (serve).

compiled_models/<name>/<version>/ holds
- model.so: TL2cgen's generated C plus the batch shim (app/models/training/shim.c);
- the portable model the library is rebuilt from on another platform: model.txt (LightGBM) or
  model.json (XGBoost);
- annotation.json when branches were annotated with training rows;
- manifest.json, written last and atomically (it is the commit point): the sha256 of every other
  file, the trainer, the feature names/order/hash, the calibration map, the build record, library
  versions and a warm-up test vector, the rows with the training library's own calibrated
  outputs, which a loader scores and compares within WARMUP_ATOL.

Both sides import this module (and app.models.calibration) and nothing of each other's, except
that compile loads its result with the serving code to verify it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

import numpy as np

MANIFEST_FORMAT = 2  # a worker refuses a newer format; fields are only ever added within one
SHIM_ABI = 3  # the shim's entry points and struct authpilot_cal; model.so must report this
MANIFEST = "manifest.json"
LIBRARY = "model.so"
ANNOTATION = "annotation.json"
WARMUP_ROWS = 12  # 8 given rows, all-missing, some-missing, a union-bug collision row
# Tree sums agree to ~1e-15 in float64 and ~1e-7 in XGBoost's float32, so an error past 1e-6 is
# a wrong library, calibration map or feature order, never rounding.
WARMUP_ATOL = 1e-6
# A manifest without model_file / threshold_type is a LightGBM build.
DEFAULT_MODEL_FILE = "model.txt"
DEFAULT_THRESHOLD_TYPE = "float64"
ENTRY_POINTS = {
    "batch": "authpilot_score",
    "predict": "predict",
    "num_feature": "get_num_feature",
    "abi": "authpilot_abi",
}
REQUIRED_FIELDS = (
    "name",
    "version",
    "feature_names",
    "feature_hash",
    "num_feature",
    "files",
    "test_vector",
)


class WarmupVector(TypedDict):
    """The manifest's test_vector."""

    rows: list[list[float | None]]  # None = missing (NaN)
    expected: list[float]  # the trainer's calibrated outputs
    atol: float


class Manifest(TypedDict):
    """manifest.json. Fields marked NotRequired may be absent (see the defaults above)."""

    format: NotRequired[int]
    name: str
    version: str
    created_at_ms: NotRequired[int]
    num_feature: int
    feature_names: list[str]
    feature_hash: str
    objective: NotRequired[str]
    trainer: NotRequired[str]
    model_file: NotRequired[str]
    threshold_type: NotRequired[str]  # float64 (LightGBM) or float32 (XGBoost)
    output: NotRequired[str]
    entry_points: NotRequired[dict[str, str]]
    missing: NotRequired[str]
    guard: NotRequired[dict[str, Any]]
    calibration: NotRequired[dict[str, Any] | None]  # Calibration.to_dict(), None = no map
    metrics: NotRequired[dict[str, Any]]
    training_window: NotRequired[Any]
    training_window_ms: NotRequired[Any]
    build: NotRequired[dict[str, Any]]
    library_versions: NotRequired[dict[str, str]]
    test_vector: WarmupVector
    files: dict[str, str]  # relative POSIX path -> sha256


class ModelRejected(Exception):
    """A model that must not serve. `reason` is a short label for metrics: manifest, checksum,
    feature_hash, probe, load, warmup or fetch (a registry download failed); `detail` says what
    was wrong."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }


def read_manifest(path: Path) -> Manifest:
    """path/manifest.json with its required fields, a format this code reads and the library
    among its checksummed files; ModelRejected("manifest") otherwise."""
    try:
        m = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ModelRejected("manifest", f"{path}: {exc}") from exc
    if not isinstance(m, dict):
        raise ModelRejected("manifest", f"{path}/{MANIFEST} is not an object")
    missing = [k for k in REQUIRED_FIELDS if k not in m]
    if missing:
        raise ModelRejected("manifest", f"{path}/{MANIFEST} lacks {missing}")
    if m.get("format", 1) > MANIFEST_FORMAT:
        raise ModelRejected(
            "manifest",
            f"manifest format {m.get('format')} is newer than this worker's {MANIFEST_FORMAT}",
        )
    if not (isinstance(m["files"], dict) and LIBRARY in m["files"]):
        raise ModelRejected("manifest", f"{LIBRARY} has no checksum in the manifest")
    return cast(Manifest, m)


def warmup_vector(rows: np.ndarray, expected: np.ndarray) -> WarmupVector:
    """The manifest's warm-up vector: NaN is written as null (JSON has no NaN)."""
    return {
        "rows": [[None if np.isnan(v) else float(v) for v in r] for r in rows],
        "expected": np.asarray(expected, dtype=np.float64).tolist(),
        "atol": WARMUP_ATOL,
    }


def warmup_arrays(m: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """The test vector as (rows, expected) float64 arrays, rows num_feature wide, non-empty and
    as many as expected; ModelRejected("manifest") otherwise."""
    try:
        nf = int(m["num_feature"])
        tv = m["test_vector"]
        rows = [[np.nan if v is None else float(v) for v in r] for r in tv["rows"]]
        x = np.array(rows, dtype=np.float64).reshape(len(rows), nf)
        y = np.asarray(tv["expected"], dtype=np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelRejected("manifest", f"unreadable test vector: {exc!r}") from exc
    if nf != len(m["feature_names"]):
        raise ModelRejected("manifest", "num_feature != len(feature_names)")
    if len(x) != len(y) or len(x) == 0:
        raise ModelRejected(
            "manifest", "test vector rows and expected outputs differ in length or are empty"
        )
    return x, y
