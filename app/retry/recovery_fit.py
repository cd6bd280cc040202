"""The retry engine's recovery table, estimated from a retry history.

Every retry in an event log (attempt k >= 2 of a payment, not a 3-D Secure step-up) is one
observation: the decline class of attempt k-1, the wait from that decline to the retry
(bucketed by the table's delays), whether a payday fell in between, how many declines came
before, and whether it was approved. Cells are estimated with a Beta prior centred on the
bundled table (`strength` pseudo-observations), so a cell the history never tried keeps its
prior and a well-observed one follows the data:

- p[class][delay]: first retries (k = 2) that crossed no payday;
- payday_boost[class]: approval of first retries that crossed a payday minus those that did
  not, in the same delay buckets;
- repeat_decay[class]: approval of later retries (k >= 3) over first retries.

Retries in a log were chosen by whatever policy ran then, so the estimates are what that
policy's retries achieved; cells it never tried stay priors. The output has the format of
app/data/retry_recovery.json plus the observation counts behind each cell.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.contracts.vocab import HOUR_MS
from app.retry.engine import _recovery, crosses_payday, decline_class, delay_bucket


def retry_observations(requests: pd.DataFrame, outcomes: pd.DataFrame,
                       table: Mapping[str, Any]) -> pd.DataFrame:  # fmt: skip
    """One row per retry: class, delay bucket, crossed payday, attempt, approved."""
    cols = ["payment_id", "attempt", "event_time", "three_ds"]
    req = requests[cols + (["issuer_country"] if "issuer_country" in requests else [])]
    out = outcomes[["payment_id", "attempt", "event_time", "approved", "response_code",
                    "three_ds"]].rename(columns={"event_time": "declined_at",
                                                 "three_ds": "prev_3ds"})  # fmt: skip
    prev = out.assign(attempt=out.attempt + 1)[~out.approved.astype(bool)]
    retries = req[req.attempt >= 2].merge(
        prev.drop(columns=["approved"]), on=["payment_id", "attempt"], how="inner"
    )
    retries = retries[~(retries.three_ds.astype(bool) & ~retries.prev_3ds.astype(bool))]
    approved = outcomes[["payment_id", "attempt", "approved"]]
    retries = retries.merge(approved, on=["payment_id", "attempt"], how="inner")
    t0 = retries.declined_at.to_numpy(np.int64)
    t1 = retries.event_time.to_numpy(np.int64)
    codes = retries.response_code.astype(str).tolist()
    country = (retries.issuer_country.astype(str).tolist() if "issuer_country" in retries
               else [None] * len(retries))  # fmt: skip
    return pd.DataFrame({
        "cls": [decline_class(c, table) for c in codes],
        "bucket": [delay_bucket((b - a) / HOUR_MS, table) for a, b in zip(t0, t1, strict=True)],
        "payday": [crosses_payday(int(a), int(b), table, c)
                   for a, b, c in zip(t0, t1, country, strict=True)],
        "attempt": retries.attempt.to_numpy(),
        "approved": retries.approved.astype(bool).to_numpy(),
    })  # fmt: skip


def _shrunk(successes: float, n: float, prior: float, strength: float) -> float:
    return float((successes + strength * prior) / (n + strength))


def fit_recovery(obs: pd.DataFrame, prior: Mapping[str, Any] | None = None,
                 strength: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """A recovery table from retry observations, shrunk towards `prior` (bundled table)."""
    prior = prior or _recovery()
    table = copy.deepcopy(dict(prior))
    table["_doc"] = (f"Fitted by `authpilot fit-retry` from {len(obs)} retries (Beta prior of "
                     f"{strength:g} observations on the bundled table); n = observations per "
                     "cell. " + prior.get("_doc", ""))  # fmt: skip
    for name, c in table["classes"].items():
        mine = obs[obs.cls == name]
        first = mine[mine.attempt == 2]
        flat = first[~first.payday]
        ns, ps = [], []
        for i, p0 in enumerate(c["p"]):
            cell = flat[flat.bucket == i]
            ns.append(len(cell))
            ps.append(round(_shrunk(cell.approved.sum(), len(cell), p0, strength), 4))
        c["p"], c["n"] = ps, ns
        if c.get("payday_boost"):
            cross = first[first.payday]
            # compare like with like: the no-payday rate of each crossing retry's own bucket
            base = np.array([ps[b] for b in cross.bucket]) if len(cross) else np.zeros(0)
            lift = float((cross.approved.to_numpy() - base).sum()) if len(cross) else 0.0
            c["payday_boost"] = round(
                max(0.0, (lift + strength * c["payday_boost"]) / (len(cross) + strength)), 4
            )
            c["n_payday"] = len(cross)
        later = mine[mine.attempt >= 3]
        r1 = _shrunk(first.approved.sum(), len(first), float(np.mean(c["p"])), strength)
        r2 = _shrunk(later.approved.sum(), len(later), r1 * c.get("repeat_decay", 1.0), strength)
        c["repeat_decay"] = round(min(1.0, r2 / r1) if r1 > 0 else c.get("repeat_decay", 1.0), 4)
        c["n_later"] = len(later)
    return table


def fit_from_log(log_dir: Path, strength: float = 30.0,
                 prior: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """fit_recovery over an event log (app.contracts.ingest: one file or a folder of parts per
    table, defaults for absent optional columns); `prior` (default: the bundled table) also
    supplies the pay calendar the payday cells use."""
    import duckdb

    from app.contracts.ingest import table_sql

    cols_r = "payment_id, attempt, event_time, three_ds, issuer_country"
    cols_o = "payment_id, attempt, event_time, approved, response_code, three_ds"
    con = duckdb.connect()
    req = con.sql(f"SELECT {cols_r} FROM ({table_sql(log_dir, 'requests')})").df()
    out = con.sql(f"SELECT {cols_o} FROM ({table_sql(log_dir, 'outcomes')})").df()
    prior = prior or _recovery()
    return fit_recovery(retry_observations(req, out, prior), prior, strength)
