"""Online feature cost per event: outcome update (all owners) + vector build for one request.

Three figures from one run over the same sample events:
  - FeatureState (the compiled kernel), over every event;
  - the numpy reference it replaced (app.features.reference), over the first
    `reference_events` (it costs ~30x more), the "before" figure;
  - the bare dict get/set traffic the same operations need (what any implementation must pay),
    the ratio base: total/ref says what ring packing and arithmetic cost on top.
The sample world has 3 routes; requests get `routes` candidates (default 4, the target's
request), extra ones repeating the first routes so that every candidate's rings hold history.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq

from app.features.definitions import ENTITIES, OWNERS
from app.features.online import FeatureState, new_buffer
from app.features.reference import ReferenceFeatureState
from app.harness.sample import write_sample_log
from app.state.windows import kernel


class _Features(Protocol):
    def fill(self, req: dict[str, Any], out: np.ndarray) -> np.ndarray: ...

    def update_outcome(self, outcome: dict[str, Any], owner: str) -> None: ...


def with_routes(req: dict[str, Any], routes: int) -> dict[str, Any]:
    """`req` with exactly `routes` candidates: its own, cycled (or cut)."""
    cands = req["candidates"]
    if not cands or routes == len(cands):
        return req
    return {**req, "candidates": [cands[i % len(cands)] for i in range(routes)]}


def time_events(
    state: _Features, reqs: list[dict[str, Any]], outs: list[dict[str, Any]]
) -> tuple[list[float], list[float]]:
    """Seconds per event: (outcome update for all owners, feature rows of the request)."""
    buf = new_buffer()
    upd, vec = [], []
    clock = time.perf_counter
    for r, o in zip(reqs, outs, strict=True):
        t0 = clock()
        state.fill(r, buf)
        t1 = clock()
        for owner in OWNERS:
            state.update_outcome(o, owner)
        t2 = clock()
        vec.append(t1 - t0)
        upd.append(t2 - t1)
    return upd, vec


def time_raw_traffic(reqs: list[dict[str, Any]], outs: list[dict[str, Any]]) -> list[float]:
    """The raw key traffic: one get per entity per candidate, one get+set per update."""
    store: dict[bytes, bytes] = {}
    ref = []
    for r, o in zip(reqs, outs, strict=True):
        t0 = time.perf_counter()
        for c in r["candidates"]:
            for e in ENTITIES:
                store.get(e.key(r, c["route_id"]).encode())
        for e in ENTITIES:
            key = e.key(o, o["route_id"]).encode()
            store[key] = store.get(key, b"")
        ref.append(time.perf_counter() - t0)
    return ref


def _us(xs: list[float]) -> float:
    return float(np.median(xs)) * 1e6


def run(events: int = 20000, routes: int = 4, reference_events: int = 2000) -> None:
    """Measure over `events` sample events and print the medians."""
    with tempfile.TemporaryDirectory() as d:
        log = write_sample_log(Path(d), n=events)
        reqs = [with_routes(r, routes) for r in pq.read_table(log / "requests.parquet").to_pylist()]
        outs = pq.read_table(log / "outcomes.parquet").to_pylist()
    t0 = time.perf_counter()
    kernel.load()
    load_s = time.perf_counter() - t0

    def stores() -> dict[str, dict[bytes, bytes]]:
        return {o: {} for o in OWNERS}

    runs: list[tuple[str, Callable[[], _Features], int]] = [
        ("compiled kernel", lambda: FeatureState(stores()), len(reqs)),
        ("numpy reference", lambda: ReferenceFeatureState(stores()), reference_events),
    ]
    figures = {}
    for name, make, n in runs:
        upd, vec = time_events(make(), reqs[:n], outs[:n])
        figures[name] = (_us(upd), _us(vec), len(upd))
    rf = _us(time_raw_traffic(reqs, outs))
    cands = np.mean([len(r["candidates"]) for r in reqs])
    print(f"events: {len(reqs)}, candidates/request: {cands:.1f} (sample world's 3 routes, cycled)")
    print(f"kernel: {kernel.library_path(kernel_dir())} (load {load_s * 1000:.0f} ms)")
    u, v, _ = figures["compiled kernel"]
    for name, (fu, fv, n) in figures.items():
        print(f"{name} ({n} events):")
        print(f"  outcome update (all owners) median {fu:7.1f} us")
        print(f"  vector build ({cands:.0f} routes)      median {fv:7.1f} us")
        print(f"  total per event             median {fu + fv:7.1f} us  -> total/ref = "
              f"{(fu + fv) / rf:.1f}x")  # fmt: skip
    ru, rv, _ = figures["numpy reference"]
    print(f"compiled total {u + v:.1f} us (target <= 50 us); numpy reference / compiled = "
          f"{(ru + rv) / (u + v):.0f}x")  # fmt: skip
    print(f"raw key traffic (ref)   median {rf:7.1f} us")


def kernel_dir() -> Path:
    from app.config import get_settings

    return get_settings().kernel_dir


if __name__ == "__main__":  # `python -m app.bench.features`: the same as `authpilot features bench`
    from app.cli.main import main

    raise SystemExit(main(["features", "bench", *sys.argv[1:]]))
