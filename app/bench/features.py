"""Online feature cost per event: outcome update (all owners) + vector build for one request.

Reference in the same run: the bare dict get/set traffic the same operations need (what any
implementation must pay), so the ratio says what ring packing and numpy cost on top.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from app.features.definitions import ENTITIES, OWNERS
from app.features.online import FeatureState, new_buffer
from app.harness.sample import write_sample_log


def run(events: int = 20000) -> None:
    """Measure over `events` sample events and print the medians."""
    with tempfile.TemporaryDirectory() as d:
        log = write_sample_log(Path(d), n=events)
        reqs = pq.read_table(log / "requests.parquet").to_pylist()
        outs = pq.read_table(log / "outcomes.parquet").to_pylist()
    state = FeatureState({o: {} for o in OWNERS})
    buf = new_buffer()
    upd, vec = [], []
    for r, o in zip(reqs, outs, strict=True):
        t0 = time.perf_counter()
        state.fill(r, buf)
        t1 = time.perf_counter()
        for owner in OWNERS:
            state.update_outcome(o, owner)
        t2 = time.perf_counter()
        vec.append(t1 - t0)
        upd.append(t2 - t1)
    # reference: the raw key traffic (one get per entity per candidate, one get+set per update)
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
    u, v, rf = (np.median(x) * 1e6 for x in (upd, vec, ref))
    cands = np.mean([len(r["candidates"]) for r in reqs])
    print(f"events: {len(reqs)}, candidates/request: {cands:.1f}")
    print(f"outcome update (all owners) median {u:7.1f} us")
    print(f"vector build ({cands:.0f} routes)   median {v:7.1f} us")
    print(f"total per event         median {u + v:7.1f} us  (target <= 50 us)")
    print(f"raw key traffic (ref)   median {rf:7.1f} us  -> total/ref = {(u + v) / rf:.1f}x")


if __name__ == "__main__":  # `python -m app.bench.features`: the same as `authpilot features bench`
    from app.cli.main import main

    raise SystemExit(main(["features", "bench", *sys.argv[1:]]))
