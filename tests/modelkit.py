"""Small compiled model versions for tests: trained on the sample world's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.features.definitions import FEATURE_NAMES, feature_hash
from app.features.offline import build_matrix
from app.harness.sample import write_sample_log
from app.models.calibration import choose
from app.models.training.compile import compile_model
from app.models.training.train import fit, time_split


def build_versions(tmp: Path, versions: tuple[str, ...] = ("v1", "v2")) -> Path:
    """compiled_models-style root with router/<version> for each version; returns the root."""
    log = write_sample_log(tmp / "log", n=3000, seed=4)
    split = time_split(build_matrix(log).df())
    root = tmp / "models"
    for i, v in enumerate(versions):
        booster = fit(split, rounds=10 + 10 * i, params={"seed": i}, show=False)
        raw = booster.predict(split.valid[list(FEATURE_NAMES)])
        cal, _ = choose(raw, split.valid.approved.to_numpy().astype(float))
        (tmp / v).mkdir(parents=True, exist_ok=True)
        booster.save_model(str(tmp / v / "model.txt"))
        compile_model(tmp / v / "model.txt", root / "router" / v, name="router", version=v,
                      feature_names=list(FEATURE_NAMES), feature_hash=feature_hash(),
                      calibration=cal,
                      test_matrix=np.ascontiguousarray(split.test[list(FEATURE_NAMES)])[:16],
                      )  # fmt: skip
    return root


RETRY_T0 = 1_767_225_600_000 + 20 * HOUR_MS  # 2026-01-01 20:00 UTC, a Thursday


def retry_decline(t: int = RETRY_T0, code: str = "05", **kw: object) -> dict[str, object]:
    base = {"request_id": "r1", "payment_id": "p1", "attempt": 1, "event_time": t,
            "request_time": t - 300, "card_fingerprint": "c1", "bin": "411111",
            "network": "VISA", "issuer_country": "GB", "merchant_id": "m1",
            "amount_minor": 5_000, "currency": "GBP", "initiator": "MIT", "route_id": "acq-gb",
            "approved": False, "response_code": code, "advice_code": None, "latency_ms": 300,
            "failure_side": "ISSUER", "three_ds": False}  # fmt: skip
    return base | kw


def retry_history(n: int, seed: int = 3) -> list[dict[str, object]]:
    """Declines of MIT payments retried after a random wait; a retry approves with 0.6 when it
    crossed a UTC midnight and 0.05 when it did not (an issuer's daily verdict)."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        t = RETRY_T0 + i * 600_000
        wait = int(rng.choice([1, 2, 4, 6, 12, 24, 48]) * HOUR_MS)
        t1 = t + wait
        p = 0.6 if t1 // DAY_MS > t // DAY_MS else 0.05
        d = retry_decline(t, payment_id=f"p{i}", request_id=f"r{i}", card_fingerprint=f"c{i % 50}")
        r = retry_decline(t1, payment_id=f"p{i}", request_id=f"r{i}b", attempt=2,
                     card_fingerprint=f"c{i % 50}", request_time=t1,
                     approved=bool(rng.random() < p))  # fmt: skip
        out += [d, r]
    return sorted(out, key=lambda o: int(o["event_time"]))  # type: ignore[call-overload]


def build_retry_versions(tmp: Path, versions: tuple[str, ...] = ("r1", "r2")) -> Path:
    """compiled_models-style root with retry/<version> for each version (trained on
    retry_history, more trees each version); returns the root."""
    from app.retry import recovery_model as rm

    x, y, t = rm.observations(retry_history(3_000), rm.Featurizer())
    root = tmp / "models"
    for i, v in enumerate(versions):
        model = rm.fit(x, y, t, rounds=20 + 20 * i)
        rm.compile_to(model, np.ascontiguousarray(x[:16]), root / "retry" / v, v)
    return root


def slice_log(src: Path, dst: Path, until_ms: int) -> Path:
    """The event log's requests, outcomes and attempts of requests before until_ms: the
    history as it stood at that time (a champion trained before a world's drift)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dst.mkdir(parents=True, exist_ok=True)
    req = pq.read_table(src / "requests.parquet")
    keep = pc.less(req["event_time"], until_ms)
    ids = pc.filter(req["request_id"], keep)
    pq.write_table(req.filter(keep), dst / "requests.parquet")
    for name in ("outcomes", "attempts"):
        if (src / f"{name}.parquet").exists():
            t = pq.read_table(src / f"{name}.parquet")
            pq.write_table(t.filter(pc.is_in(t["request_id"], ids)), dst / f"{name}.parquet")
    return dst


def sabotage_log(src: Path, dst: Path, before_ms: int, seed: int = 0) -> Path:
    """A copy of the log whose outcomes before before_ms are shuffled among themselves (the
    approval, response code, advice code and failure side move together, so every outcome is
    still a valid one): a training set broken the way a join on the wrong key breaks it, with
    the latest window left true."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("requests", "attempts"):
        if (src / f"{name}.parquet").exists():
            pq.write_table(pq.read_table(src / f"{name}.parquet"), dst / f"{name}.parquet")
    t = pq.read_table(src / "outcomes.parquet")
    early = np.flatnonzero(t["request_time"].to_numpy() < before_ms)
    perm = np.arange(t.num_rows)
    perm[early] = np.random.default_rng(seed).permutation(early)
    cols = {c: t[c] for c in t.column_names}
    for c in ("approved", "response_code", "advice_code", "failure_side"):
        if c in cols:
            cols[c] = t[c].take(pa.array(perm))
    pq.write_table(pa.table(cols), dst / "outcomes.parquet")
    return dst
