"""The first dlopen of a model library, run as a child `python -I probe.py SO NF ABI`.

A truncated model.so whose checksum matches (a bad copy recorded as good) kills the process that
dlopens it with SIGBUS, so scoring runs this script in a child process before it opens the
library itself: dlopen, the shim's entry points, then the warm-up rows (JSON on stdin) scored
raw (no calibration), printed as a JSON list. Standard library only, so it starts in ~20 ms;
run by path, never imported by the worker.
"""

import ctypes
import json
import sys


def main(argv: list[str]) -> None:
    so, nf, abi = argv[0], int(argv[1]), int(argv[2])
    rows = json.loads(sys.stdin.read())
    lib = ctypes.CDLL(so)
    assert lib.authpilot_abi() == abi, "abi"
    assert lib.authpilot_entry_size() in (4, 8), "entry size"
    assert lib.get_num_feature() == nf, "num_feature"
    flat = [float("nan") if v is None else float(v) for r in rows for v in r]
    n = len(rows)
    x = (ctypes.c_double * max(1, len(flat)))(*flat)
    out = (ctypes.c_double * max(1, n))()
    f = lib.authpilot_score
    vp, i32 = ctypes.c_void_p, ctypes.c_int32
    f.argtypes = [vp, i32, i32, vp, vp]
    assert f(x, n, nf, out, None) == 0, "rc"
    print(json.dumps(list(out)[:n]))


if __name__ == "__main__":
    main(sys.argv[1:])
