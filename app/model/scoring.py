"""The scoring core: verified compiled models called directly on preallocated buffers.

Loading checks, in order, before a model may serve: every file's sha256 against the manifest,
the feature hash against this worker's definitions, that the library loads and reports the
manifest's feature count, and that the manifest's warm-up rows score to the recorded outputs
within 1e-6. Any failure raises ModelRejected(reason) and the caller keeps its old model.

score_many() is one ctypes call for all candidate routes of a request (or a batch of requests),
then the calibration map in place: nothing is allocated per call except by np.interp.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from app.model.calibration import Calibration
from app.model.compile import sha256


class ModelRejected(Exception):
    """A model that must not serve; `reason` is the metric label (checksum, feature_hash, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CompiledModel:
    """One verified model version, ready to score."""

    def __init__(self, path: Path, expected_feature_hash: str) -> None:
        self.path = path
        try:
            self.manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelRejected("manifest", f"{path}: {exc}") from exc
        m = self.manifest
        self.name, self.version = m["name"], m["version"]
        for rel, digest in m["files"].items():
            f = path / rel
            if not f.is_file() or sha256(f) != digest:
                raise ModelRejected("checksum", f"{rel} is missing or differs from the manifest")
        if m["feature_hash"] != expected_feature_hash:
            raise ModelRejected(
                "feature_hash",
                f"model features {m['feature_hash']} != worker features {expected_feature_hash}",
            )
        try:
            self._lib = ctypes.CDLL(str(path / "model.so"))
            fn = self._lib.authpilot_score
            nf = self._lib.get_num_feature()
        except (OSError, AttributeError) as exc:
            raise ModelRejected("load", f"model.so: {exc}") from exc
        if nf != m["num_feature"]:
            raise ModelRejected("load", f"library has {nf} features, manifest {m['num_feature']}")
        vp, ci, cd = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
        fn.argtypes = [vp, ci, ci, vp, ci, cd, cd, vp, vp, ci]
        fn.restype = ci
        self._fn = fn
        self.num_feature = nf
        self.calibration = Calibration.from_dict(m["calibration"])
        self.label = f"{self.name}/{self.version}"
        self.warmup_check()

    @property
    def calibration(self) -> Calibration:
        return self._cal

    @calibration.setter
    def calibration(self, cal: Calibration) -> None:
        """Set the map; its arguments to the C call are prepared once here, not per call."""
        self._cal = cal
        self._kx = np.ascontiguousarray(cal.x, dtype=np.float64)
        self._ky = np.ascontiguousarray(cal.y, dtype=np.float64)
        kind = {"none": 0, "isotonic": 1, "platt": 2}[cal.kind]
        self._cal_args = (kind, cal.a, cal.b, self._kx.ctypes.data, self._ky.ctypes.data,
                          len(self._kx))  # fmt: skip

    def score_many(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Calibrated approval probabilities of the rows of x (C-contiguous float64) into out:
        one C call, no allocation."""
        n = x.shape[0]
        rc = self._fn(x.ctypes.data, n, self.num_feature, out.ctypes.data, *self._cal_args)
        if rc != 0:
            raise ValueError(f"{self.label}: rows have {x.shape[1]} features")
        return out[:n]

    def warmup_check(self) -> None:
        tv = self.manifest["test_vector"]
        rows = np.array([[np.nan if v is None else v for v in r] for r in tv["rows"]], dtype=float)
        got = self.score_many(np.ascontiguousarray(rows), np.empty(len(rows)))
        err = float(np.max(np.abs(got - np.asarray(tv["expected"])))) if len(rows) else 0.0
        if not err <= 1e-6:
            raise ModelRejected("warmup", f"test vector differs by {err:.3g} (> 1e-6)")
