"""Cost of the online correction per request: the offsets of 4 candidate routes read from the
published residual sums (12 keys), against the bare dict reads the same request needs (the
ratio base: what decoding, decay and shrinkage cost on top), and posterior win shares.

`python -m app.bench.correction` (in-process, no broker; ~10 s). Issue 16: 87 us per request
before the keys were cached and the offset math inlined, 54 us after (this machine); segment
dispersion took it to 44-45 us, one route offset per route and one log per level back to 38-39
(3 alternating runs each, same machine, same run).
"""

from __future__ import annotations

import random
import time

from app.routing.correction import Correction, CorrectionParams
from app.routing.expected_value import win_shares
from app.state.windows.residual import Decay, residual_keys, update

ROUTES = ["proc-global", "acq-us", "acq-gb", "acq-de"]
T0 = 1_700_000_000_000


def main(requests: int = 20_000, history: int = 50_000, seed: int = 1) -> None:
    rng = random.Random(seed)
    bins = [str(400_000 + i) for i in range(2_000)]
    store: dict[bytes, bytes] = {}
    d = Decay()
    for i in range(history):
        for k in residual_keys(rng.choice(ROUTES), rng.choice(bins), "VISA", "FR"):
            store[k] = update(store.get(k), rng.random() < 0.8, 0.8, T0 + i, d)
    corr = Correction(store.get, CorrectionParams())
    reqs = [{"event_time": T0 + history + i, "bin": rng.choice(bins), "network": "VISA",
             "issuer_country": "FR"} for i in range(requests)]  # fmt: skip
    keys = [[k for r in ROUTES for k in residual_keys(r, q["bin"], "VISA", "FR")] for q in reqs]
    t0 = time.perf_counter()
    for ks in keys:
        for k in ks:
            store.get(k)
    bare = (time.perf_counter() - t0) / requests
    t0 = time.perf_counter()
    offs = [corr.offsets(q, ROUTES) for q in reqs]
    full = (time.perf_counter() - t0) / requests
    p = [0.85, 0.83, 0.80, 0.86]
    t0 = time.perf_counter()
    for o in offs:
        win_shares(p, [x.explore_sd(0.85) for x in o], 2000.0, [10, 12, 15, 11], [0.0] * 4,
                   [0, 1, 2, 3], 1.0)  # fmt: skip
    shares = (time.perf_counter() - t0) / requests
    print(f"{requests:,} requests x {len(ROUTES)} routes, {len(store):,} residual keys")
    print(f"  bare dict reads (12 keys)     {bare * 1e6:7.1f} us/request  1.00")
    print(f"  Correction.offsets            {full * 1e6:7.1f} us/request  {full / bare:5.1f}x")
    print(f"  win_shares (scale 1, if on)   {shares * 1e6:7.1f} us/request  {shares / bare:5.1f}x")


if __name__ == "__main__":
    main()
