"""The compiled ring kernel: ring.c (beside this module, package data) built with gcc into a
CPython extension module, once per machine, source version and Python ABI, then imported.

Pinned: C, as an extension module (METH_FASTCALL), not ctypes and not numba. A ring is a few
dozen slots, so a call costs more than its arithmetic, and an event touches ~30 rings (a
4-route request reads 21, an outcome updates 9). Measured on this 2-core machine, best of
5 x 200k calls over an empty-loop baseline, on a 61-slot country_route value (a no-op call, and
a read of its three windows x 8 metrics):
  - ctypes (CDLL, argtypes set, the bytes passed as c_char_p): 450-890 ns a no-op call,
    620-650 ns a read. Fine for the models' one call per request (app/models/training/shim.c),
    ~20 us an event here before any Python around the calls;
  - numba 0.68.1 (@njit(cache=True)): 235-280 ns a no-op call with ready arrays, but each bytes
    value needs an np.frombuffer view (~210 ns): 580 ns a no-op, 870-900 ns a read, and a
    result is an array, not the bytes a table stores (one more copy). Start-up: `import numba`
    0.45-0.55 s and 0.36-0.43 s to load even a cached function, in every worker process;
  - this extension: 3-30 ns a no-op call, ~180 ns a read; values are read in place and new
    values are created as bytes directly. gcc builds it in ~0.6 s once per machine; a process
    then imports the file in ~0.3 ms.
Cheap calls let the kernel take whole units of work: RowPlan.fill_keyed makes every ring key of
a request, gets the values from the stores and writes all ring features of all its rows in one
call; RingUpdates.apply makes the keys, gets, updates and sets an owner's rings in one call.
Per event (`python -m app.bench.features`: update for all owners + rows of a 4-route request),
same run, quiet machine: 18-20 us with the kernel, 410-430 us with the numpy reference (26-28 us
and 660-890 us at load 4); before this module the 3-route benchmark measured 360-390 us.

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
# No -ffast-math: the sums and rates must be bit-identical to the numpy reference.
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
