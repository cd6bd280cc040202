"""The compiled ring kernel: ring.c (beside this module, package data) built with gcc into a
CPython extension module, once per machine, source version and Python ABI, then imported.

Why C as an extension module, not ctypes and not numba: a ring is a few dozen slots, so the
call costs more than the arithmetic, and a request reads ~21 ring values. Measured on this
2-core machine (best of 5 x 200k calls, a 61-slot country_route value, a no-op and a full
read of its three windows):
  - ctypes (CDLL, argtypes set, bytes passed as c_char_p):  ~700-900 ns per call (no-op),
    650-1300 ns per read; the calls the models make (app/models/training/shim.c) are fine at
    one per request, not at ~30 per event;
  - numba 0.68.1 @njit(cache=True): ~235 ns per call with ready arrays, but every bytes value
    needs an np.frombuffer view first (~210 ns), 1.3-1.9 us per read in all; and a process pays
    ~0.45 s to import numba plus ~0.4 s to load even a cached function at start-up;
  - this extension (METH_FASTCALL, bytes read in place, new values returned as bytes without
    a second copy): ~30 ns per call, ~180 ns per full read.
So one `fill` call writes every feature of a request's rows, and an outcome costs one `update`
call per entity. gcc builds it in ~0.2 s on first use; later processes only import the file.

The file is `<kernel_dir>/ring-<tag><EXT_SUFFIX>` (AUTHPILOT_KERNEL_DIR, default
~/.cache/authpilot/kernels), tag = hash of the source, the flags and the interpreter, so an edit
or another Python never loads a stale build. Building needs gcc and Python's C headers; a
machine without them (the runtime image) gets the file built elsewhere (the image's builder
stage runs `authpilot features kernel`) or a KernelUnavailable that says so.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).with_name("ring.c")
MODULE = "_ring"  # ring.c's PyInit__ring
# -O2: -O3 measured no faster on these loops; no -ffast-math: the sums and rates must be
# bit-identical to the numpy reference.
FLAGS = ("-O2", "-fPIC", "-shared", "-std=c11", "-Wall", "-Werror", "-fno-strict-aliasing")


class KernelUnavailable(RuntimeError):
    """The kernel is not built and cannot be built here (no gcc, no Python headers, gcc
    failed): the message says which and what to do."""


def tag() -> str:
    """What the build depends on: source, flags, interpreter ABI and machine."""
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (*FLAGS, sys.implementation.cache_tag, sysconfig.get_config_var("EXT_SUFFIX"),
                 platform.machine()):  # fmt: skip
        h.update(b"\0" + str(part).encode())
    return h.hexdigest()[:16]


def library_path(kernel_dir: Path) -> Path:
    return kernel_dir / f"ring-{tag()}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


def build(kernel_dir: Path) -> Path:
    """The kernel's file in kernel_dir, compiled first if absent (concurrent builders each
    write a temporary file and rename it: a reader never sees half a library)."""
    target = library_path(kernel_dir)
    if target.exists():
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        raise KernelUnavailable(
            f"the ring kernel is not built ({target}) and gcc is not on PATH: install gcc, or "
            "run `authpilot features kernel` where gcc exists with the same AUTHPILOT_KERNEL_DIR "
            "and Python, and ship that directory"
        )
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").exists():
        raise KernelUnavailable(
            f"the ring kernel needs Python's C headers, and {include}/Python.h is missing: "
            "install this interpreter's development headers (e.g. python3.11-dev)"
        )
    kernel_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ring-", suffix=".so", dir=kernel_dir)
    os.close(fd)
    try:
        cmd = [gcc, *FLAGS, f"-I{include}", str(SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelUnavailable(f"gcc failed building {SOURCE}:\n{done.stderr.strip()}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def import_from(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@cache
def load() -> ModuleType:
    """The kernel module of this process (built on first use). Reads the settings only when
    first called, so importing the ring modules stays free of app.config."""
    from app.config import get_settings

    return import_from(build(get_settings().kernel_dir))
