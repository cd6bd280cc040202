"""The scoring core: verified compiled models called directly, without per-call allocation.

Loading checks, in order, before a model may serve (any failure raises ModelRejected(reason)
and the caller keeps the model it has):
1. manifest: readable, the expected format, model.so listed among its checksummed files;
2. checksum: every file's sha256 against the manifest;
3. feature_hash: the manifest's against this worker's feature definitions;
4. probe: a child process (app/models/serving/probe.py) dlopens the library and scores the
   warm-up rows first. A truncated model.so whose checksum matches (a bad copy recorded as good)
   kills the process that dlopens it with SIGBUS - measured here - so the first dlopen is never
   in the worker;
5. load: the library in this process, its entry points, ABI, the manifest's threshold type
   with the matching sizeof(union Entry) (float64: 8, LightGBM; float32: 4, XGBoost) and
   feature count;
6. warmup: the manifest's rows score to the trainer's recorded outputs within 1e-6.
The library probed and loaded is a private copy, checksummed again after the copy (what is
verified is what runs) and unlinked once mapped: a version rewritten in place on the model
volume while a worker serves it cannot change the code the worker runs (measured: a library
rewritten under a process that had it mapped crashed that process in _dl_fini at exit).

score_many(x, out) is one ctypes call for all candidate routes of a request: the C shim
(app/models/training/shim.c) encodes NaN as Entry.missing = -1, applies the union-bug guard,
calls the generated predict() per row on an Entry row on its stack, and calibrates. The library
is opened with ctypes.PyDLL, which keeps the GIL for the call: a 10 us call gains nothing from
releasing it, and re-acquiring it behind another thread can cost a whole switch interval (5 ms).
Array pointers come from ctypes.c_double.from_buffer (~0.4 us) rather than ndarray.ctypes
(~2 us, measured): on a 4-row request that was a third of the trees' own time.

score_batch(x, out, offsets, k) is one ctypes call for k requests whose candidate rows are
concatenated: the fixed ~1-2 us of a ctypes call is paid once per batch instead of once per
request (the figures: `authpilot bench-model`, rows "(e) batch of ...").
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.models.artifact import (
    DEFAULT_THRESHOLD_TYPE,
    LIBRARY,
    SHIM_ABI,
    WARMUP_ATOL,
    Manifest,
    ModelRejected,
    read_manifest,
    sha256,
    warmup_arrays,
)
from app.models.calibration import Calibration

_F64 = np.dtype(np.float64)
_PD = ctypes.POINTER(ctypes.c_double)
_I32 = np.dtype(np.int32)
_PI = ctypes.POINTER(ctypes.c_int32)
# numpy's stubs do not declare the buffer protocol ndarrays implement, hence Callable[[Any], Any]
_from_buffer_i32: Callable[[Any], Any] = ctypes.c_int32.from_buffer
# threshold type -> sizeof(union Entry) the generated code must have
_ENTRY_SIZE = {"float64": 8, "float32": 4}
_from_buffer: Callable[[Any], Any] = ctypes.c_double.from_buffer
_BUFFER_ERRORS = (TypeError, ValueError, BufferError)
PROBE_TIMEOUT_S = 60.0
_PROBE_SCRIPT = str(Path(__file__).with_name("probe.py"))


class _Cal(ctypes.Structure):
    """struct authpilot_cal in app/models/training/shim.c (part of SHIM_ABI)."""

    _fields_ = [
        ("kind", ctypes.c_int32),
        ("nk", ctypes.c_int32),
        ("a", ctypes.c_double),
        ("b", ctypes.c_double),
        ("kx", ctypes.c_void_p),
        ("ky", ctypes.c_void_p),
    ]


_KINDS = {"none": 0, "isotonic": 1, "platt": 2}


def _require(cond: bool, reason: str, detail: str) -> None:
    if not cond:
        raise ModelRejected(reason, detail)


class CompiledModel:
    """One verified model version, ready to score.

    Thread-safe: the C call holds the GIL (PyDLL) and keeps its Entry row on its own stack;
    the pointer caches are tuples replaced whole; the rare copy path (inputs that are not
    C-contiguous writable float64) uses preallocated buffers under a lock."""

    def __init__(
        self,
        path: str | Path,
        expected_feature_hash: str,
        *,
        max_batch: int = 64,
        probe: bool = True,
    ) -> None:
        self.path = path = Path(path)
        m = read_manifest(path)
        self.manifest: Manifest = m
        self.name, self.version = str(m["name"]), str(m["version"])
        self.label = f"{self.name}/{self.version}"
        self.feature_names: list[str] = list(m["feature_names"])
        self.feature_hash: str = m["feature_hash"]
        for rel, digest in m["files"].items():
            f = path / rel
            _require(
                f.is_file() and sha256(f) == digest,
                "checksum",
                f"{path / rel} is missing or differs from the manifest",
            )
        _require(
            m["feature_hash"] == expected_feature_hash,
            "feature_hash",
            f"model features {m['feature_hash']} != worker features {expected_feature_hash}",
        )
        self._warm_x, self._warm_y = warmup_arrays(m)
        self.num_feature = nf = self._warm_x.shape[1]
        private = _private_copy(path / LIBRARY, m["files"][LIBRARY])
        try:
            if probe:
                self._probe(private)
            self._open(private, nf)
        finally:  # mapped by now (or refused): the name is no longer needed
            private.unlink(missing_ok=True)
            private.parent.rmdir()
        self._lock = threading.Lock()
        self.max_batch = int(max_batch)
        self._xbuf = np.empty((self.max_batch, nf), dtype=np.float64)
        self._obuf = np.empty(self.max_batch, dtype=np.float64)
        self._xc: tuple[Any, Any, int] = (None, None, 0)
        self._oc: tuple[Any, Any, int] = (None, None, 0)
        self._fc: tuple[Any, Any, int] = (None, None, 0)  # offsets of score_batch
        self._manifest_cal = Calibration.from_dict(m.get("calibration"))
        self._manifest_cal_c = self._cal_struct(self._manifest_cal)
        self.calibration = self._manifest_cal
        self.warmup_check()

    # -- loading ---------------------------------------------------------------------------

    def _probe(self, library: Path) -> None:
        """Load and run the library once in a child process: a crash there is a rejection."""
        rows = self.manifest["test_vector"]["rows"]
        so, nf = str(library), str(self.num_feature)
        cmd = [sys.executable, "-I", _PROBE_SCRIPT, so, nf, str(SHIM_ABI)]
        try:
            res = subprocess.run(
                cmd, input=json.dumps(rows), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelRejected("probe", f"model.so did not answer in {PROBE_TIMEOUT_S} s") from exc
        if res.returncode != 0:
            how = f"signal {-res.returncode}" if res.returncode < 0 else f"exit {res.returncode}"
            last = (res.stderr.strip().splitlines() or [""])[-1][:300]
            raise ModelRejected("probe", f"model.so failed in a probe process ({how}): {last}")
        try:
            got = json.loads(res.stdout)
        except ValueError as exc:
            raise ModelRejected("probe", f"unreadable probe output {res.stdout[:200]!r}") from exc
        _require(isinstance(got, list) and len(got) == len(rows), "probe", "probe output size")

    def _open(self, so: Path, nf: int) -> None:
        try:
            lib = ctypes.PyDLL(str(so))
            abi = lib.authpilot_abi()
            entry = lib.authpilot_entry_size()
            lib_nf = lib.get_num_feature()
            fn = lib.authpilot_score
            batch = lib.authpilot_score_batch
            _ = lib.predict  # the generated entry point the shim calls must be there
            ttype = lib.get_threshold_type
        except (OSError, AttributeError) as exc:
            raise ModelRejected("load", f"{so}: {exc}") from exc
        ttype.restype = ctypes.c_char_p
        _require(abi == SHIM_ABI, "load", f"shim ABI {abi}, this worker speaks {SHIM_ABI}")
        want = str(self.manifest.get("threshold_type", DEFAULT_THRESHOLD_TYPE))
        _require(
            ttype() == want.encode() and entry == _ENTRY_SIZE.get(want),
            "load",
            f"union Entry is {entry} bytes, thresholds {ttype()!r}: the manifest says {want}",
        )
        _require(lib_nf == nf, "load", f"library has {lib_nf} features, manifest {nf}")
        fn.argtypes = [_PD, ctypes.c_int32, ctypes.c_int32, _PD, ctypes.c_void_p]
        fn.restype = ctypes.c_int32
        batch.argtypes = [_PD, _PI, ctypes.c_int32, ctypes.c_int32, _PD, ctypes.c_void_p]
        batch.restype = ctypes.c_int32
        self._batch = batch
        self._lib = lib
        self._fn = fn

    @staticmethod
    def _cal_struct(cal: Calibration) -> tuple[_Cal, np.ndarray, np.ndarray]:
        kx = np.ascontiguousarray(cal.x, dtype=np.float64)
        ky = np.ascontiguousarray(cal.y, dtype=np.float64)
        if cal.kind == "isotonic" and (
            len(kx) != len(ky) or len(kx) == 0 or np.any(np.diff(kx) < 0) or np.isnan(kx).any()
        ):
            raise ModelRejected("manifest", "isotonic knots must be non-empty, equal, sorted")
        c = _Cal(
            _KINDS[cal.kind], len(kx), float(cal.a), float(cal.b), kx.ctypes.data, ky.ctypes.data
        )
        return c, kx, ky  # the arrays keep the knots alive as long as the struct

    @property
    def calibration(self) -> Calibration:
        return self._cal

    @calibration.setter
    def calibration(self, cal: Calibration) -> None:
        """Replace the map (tests, what-if analysis); the C struct is built here, once."""
        self._cal = cal
        self._cal_c = self._cal_struct(cal)
        self._cal_ptr = ctypes.addressof(self._cal_c[0])

    # -- scoring ---------------------------------------------------------------------------

    def score_many(self, x: np.ndarray, out: np.ndarray, n: int | None = None) -> np.ndarray:
        """Calibrated approval probabilities of rows x[:n] (n defaults to all rows; NaN =
        missing) into out[:n]; returns out[:n] (a view).

        One C call for all n rows and no array allocation when x and out are C-contiguous
        writable float64 (the score agent's preallocated buffers); anything else is copied
        through preallocated buffers first. The C pointers of the last x and out seen are
        cached by identity, so passing the same preallocated buffers with n (rather than a
        fresh view x[:n] each call) skips ~0.9 us of pointer wrapping per call."""
        return self._score(x, out, n, self._cal_ptr)

    def predict_raw(self, x: np.ndarray, out: np.ndarray, n: int | None = None) -> np.ndarray:
        """Like score_many without the calibration map: the model's own probability, which
        equals lightgbm.Booster.predict(x) (raw_score=False) or XGBoost's inplace_predict."""
        return self._score(x, out, n, None)

    def score_batch(
        self, x: np.ndarray, out: np.ndarray, offsets: np.ndarray, k: int | None = None
    ) -> np.ndarray:
        """Calibrated probabilities of k requests in one C call: request i's candidate rows
        are x[offsets[i]:offsets[i+1]] and its results land in out[offsets[i]:offsets[i+1]];
        returns out[:offsets[k]] (a view). k defaults to len(offsets) - 1.

        For a caller holding several events: one ctypes call per batch instead of one per
        request, with results identical to score_many on each request's rows (the same C
        code per row). offsets: int32, offsets[0] == 0, non-decreasing (checked in C: a
        ValueError, nothing scored). Preallocated C-contiguous buffers (x, out and offsets)
        are bound once and reused as in score_many; anything else takes the copy path."""
        cf = self._fc
        if cf[0] is not offsets:
            cf = self._fc = self._bind_offsets(offsets)
        if k is None:
            k = cf[2] - 1
        elif not 0 <= k < cf[2]:
            raise ValueError(f"k={k} but offsets has {cf[2]} entries")
        if k < 0:
            raise ValueError("offsets must hold at least one entry (0)")
        n = int(cf[0][k])
        cx, co = self._bound(x, out, n)
        if cx[1] is None or co[1] is None or cf[1] is None or n == 0:
            _check_offsets(np.asarray(offsets)[: k + 1])
            return self._run_slow(x, out, n, self._cal_ptr)
        if self._batch(cx[1], cf[1], k, self.num_feature, co[1], self._cal_ptr) != 0:
            raise ValueError(f"{self.label}: offsets must start at 0 and never decrease")
        return out[:n]

    def _score(self, x: np.ndarray, out: np.ndarray, n: int | None, cal: int | None) -> np.ndarray:
        cx, co = self._bound(x, out, n)
        n = cx[2] if n is None else n
        if cx[1] is None or co[1] is None or n == 0:
            return self._run_slow(x, out, n, cal)
        if self._fn(cx[1], n, self.num_feature, co[1], cal) != 0:
            raise ValueError(f"{self.label}: the library refused {n} x {self.num_feature}")
        return out[:n]

    def _bound(self, x: np.ndarray, out: np.ndarray, n: int | None) -> tuple[Any, Any]:
        """The cached (array, pointer, capacity) of x and out, n rows checked against both,
        so no C call can read or write past either buffer."""
        cx, co = self._xc, self._oc  # each a tuple, swapped whole: safe across threads
        if cx[0] is not x:
            cx = self._xc = self._bind(x, True)
        if co[0] is not out:
            co = self._oc = self._bind(out, False)
        if n is None:
            n = cx[2]
        elif not 0 <= n <= cx[2]:
            raise ValueError(f"n={n} but x has {cx[2]} rows")
        if n > co[2]:
            raise ValueError(f"out holds {co[2]} values, {n} rows to score")
        return cx, co

    @staticmethod
    def _bind_offsets(offsets: Any) -> tuple[Any, Any, int]:
        """(offsets, int32 pointer or None, length): like _bind, for score_batch's offsets."""
        a = offsets if isinstance(offsets, np.ndarray) else np.asarray(offsets)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValueError(f"offsets must be a 1-d integer array, got {a.dtype} {a.shape}")
        if a.dtype is not _I32:
            return (a, None, a.size)
        try:
            return (a, _from_buffer_i32(a), a.size)
        except _BUFFER_ERRORS:
            return (a, None, a.size)

    def _bind(self, a: Any, is_x: bool) -> tuple[Any, Any, int]:
        """(array, its C pointer or None when it must go through the copy path, capacity).
        A bound array stays referenced (no id reuse) and exported (numpy refuses to resize
        or free its data meanwhile), so the cached pointer cannot dangle."""
        a = a if isinstance(a, np.ndarray) else np.asarray(a)
        if is_x and (a.ndim != 2 or a.shape[1] != self.num_feature):
            raise ValueError(f"{self.label}: rows must have {self.num_feature} features, "
                             f"got shape {a.shape}")  # fmt: skip
        cap = a.shape[0] if is_x else a.size
        if a.dtype is not _F64 or (not is_x and a.ndim != 1):
            return (a, None, cap)
        try:
            return (a, _from_buffer(a), cap)  # raises unless C-contiguous, writable, non-empty
        except _BUFFER_ERRORS:
            return (a, None, cap)

    def _run_slow(self, x: Any, out: np.ndarray, n: int, cal: int | None) -> np.ndarray:
        x = np.asarray(x)
        mb = self.max_batch
        with self._lock:
            xp, op = _from_buffer(self._xbuf), _from_buffer(self._obuf)
            for i in range(0, n, mb):
                m = min(mb, n - i)
                np.copyto(self._xbuf[:m], x[i : i + m], casting="same_kind")
                if self._fn(xp, m, self.num_feature, op, cal) != 0:
                    raise ValueError(f"{self.label}: the library refused {x.shape}")
                out[i : i + m] = self._obuf[:m]
        return out[:n]

    def warmup_check(self) -> None:
        """Score the manifest's warm-up rows with the manifest's calibration and compare with
        the trainer's recorded outputs; ModelRejected("warmup") past 1e-6 (tree sums agree to
        ~1e-15 in float64, ~1e-7 in XGBoost's float32, so anything visible is a wrong library,
        map or feature order)."""
        got = np.empty(len(self._warm_x))
        self._score(self._warm_x, got, None, ctypes.addressof(self._manifest_cal_c[0]))
        err = float(np.max(np.abs(got - self._warm_y)))
        _require(
            err <= WARMUP_ATOL,
            "warmup",
            f"{self.label}: test vector differs by {err:.3g} (> {WARMUP_ATOL})",
        )

    def close(self) -> None:
        """Drop references to the library (glibc unloads it when nothing else holds it)."""
        self._fn = self._batch = None  # type: ignore[assignment]
        self._xc = self._oc = self._fc = (None, None, 0)
        self._lib = None  # type: ignore[assignment]


def _check_offsets(offsets: np.ndarray) -> None:
    """The C entry point's offsets rule, for the copy path (which scores with authpilot_score)."""
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must start at 0 and never decrease")


def _private_copy(library: Path, digest: str) -> Path:
    """A copy of `library` only this process knows, checked against the manifest's digest."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="authpilot-model-"))
    copy = d / LIBRARY
    shutil.copyfile(library, copy)
    if sha256(copy) != digest:
        copy.unlink()
        d.rmdir()
        raise ModelRejected("checksum", f"{library} changed while it was being loaded")
    return copy
