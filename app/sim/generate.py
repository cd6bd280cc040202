"""Event log writer: simulate a scenario and write world.json + Parquet tables.

Output directory (all Parquet tables are row-aligned: row i of each is the same attempt, rows
sorted by request event_time, then payment, then attempt):

- world.json        resolved scenario, derived world (affinity matrix), run parameters, counts
- requests.parquet  one row per attempt, AuthorizationRequest fields (candidates as a list of
                    structs), as the gateway sent it
- attempts.parquet  the logging policy's decision per attempt: route_id, propensity, policy;
                    plus simulator truth for evaluation only (true_p_approve of the route taken,
                    oracle_route and oracle_p_approve) -- never features
- outcomes.parquet  one row per attempt, AuthorizationOutcome fields, plus `decline_kind`
                    (simulator truth: which stage declined)
- cards.parquet     the card population with its hidden state (truth, for analysis)

Retries in the history follow a naive fixed schedule (scenario `retries`): after a decline with
code c the merchant retries with probability rules[c].share after delays_h[k-1] hours (k = the
attempt just declined, times U(1-jitter, 1+jitter)), through the same logging policy; SCA soft
declines are retried with 3-D Secure. A retry that would fall after the horizon is not logged.

`attempts` is exact: the number of payments is sized from a small seeded pilot run, a little
over, and the log is then cut after the first `attempts` attempts in payment order, so the
last ~1% of the horizon can miss some retries.

Everything is vectorized per chunk of payments and per attempt number; each chunk draws from
its own `default_rng([seed, 1, chunk])` so the output is a pure function of (scenario, seed,
attempts, chunk size) and byte-identical across runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.contracts.vocab import CHANNELS, FUNDING, HOUR_MS, INITIATORS, NETWORKS
from app.sim.logging_policy import POLICY_NAME, choose_routes
from app.sim.scenarios import load_scenario
from app.sim.traffic import Payments, payment_times, sample_payments, to_batch
from app.sim.truth import APPROVED, FAILURE_SIDE, KINDS, SCA, draw_many, p_approve_matrix
from app.sim.world import EXEMPTIONS, HARD_STATES, World, build_world

Progress = Callable[[str, int, int], None]
CHUNK_PAYMENTS = 200_000  # ~50 MB of columns per chunk; big enough that numpy dominates
_PILOT_MAX = 40_000
WRITE_ROWS = 1 << 20  # rows per Parquet row group / Arrow slice
_OVERSIZE = 1.01


@dataclass
class SimulationResult:
    out_dir: Path
    attempts: int
    payments: int
    seconds: float
    files: dict[str, Path]

    @property
    def attempts_per_second(self) -> float:
        return self.attempts / self.seconds if self.seconds > 0 else math.inf


def _take(p: Payments, idx: np.ndarray) -> Payments:
    return Payments(**{f.name: getattr(p, f.name)[idx] for f in fields(p)})


class _RetryTable:
    """The retry schedule as arrays indexed by response-code index (SCA separately)."""

    def __init__(self, world: World) -> None:
        C, K = len(world.codes), max(world.retries.max_attempts - 1, 1)
        self.share = np.zeros(C + 1)  # last row: SCA
        self.delay = np.full((C + 1, K), np.nan)
        self.step_up = np.zeros(C + 1, bool)
        for key, rule in world.retries.rules.items():
            row = C if key == "SCA" else world.code_idx.get(key)
            if row is None:  # a rule for a code this world never sends
                continue
            self.share[row] = rule.share
            d = list(rule.delays_h)[:K]
            self.delay[row, : len(d)] = d
            self.step_up[row] = rule.step_up_three_ds


def _simulate_payments(world: World, p: Payments, pay: np.ndarray, rng: np.random.Generator,
                       rt: _RetryTable, oracle: bool = True) -> dict[str, np.ndarray]:  # fmt: skip
    """Every attempt of the payments `p` (global indices `pay`), one attempt number at a time."""
    out: list[dict[str, np.ndarray]] = []
    C = len(world.codes)
    n = len(p)
    active = np.arange(n)
    t = p.t_ms.copy()
    three_ds = p.three_ds.copy()
    prev_route = np.full(n, -1, np.int64)
    prev_code = np.full(n, -1, np.int64)
    for k in range(1, world.retries.max_attempts + 1):
        if not len(active):
            break
        sub = _take(p, active)
        b = to_batch(world, sub, t[active], three_ds[active])
        route, prop = choose_routes(world, sub.merchant, rng)
        d = draw_many(world, b, route, rng)
        cols = {
            "pay": pay[active], "attempt": np.full(len(active), k, np.int32), "t_ms": t[active],
            "three_ds": three_ds[active], "route": route, "propensity": prop,
            "prev_route": prev_route[active], "prev_code": prev_code[active], "kind": d.kind,
            "code": d.code, "mac": d.mac, "latency": d.latency_ms, "p_true": d.p_approve,
        }  # fmt: skip
        for f in ("merchant", "card", "amount", "channel", "mit", "recurring", "sca_required",
                  "exemption"):  # fmt: skip
            cols[f] = getattr(sub, f)
        if oracle:
            P = p_approve_matrix(world, b)
            P = np.where(world.merchant_cand_mask[sub.merchant], P, -1.0)
            best = P.argmax(1)
            cols["oracle_route"] = best
            cols["oracle_p"] = P[np.arange(len(best)), best]
        out.append(cols)
        if k == world.retries.max_attempts:
            break
        row = np.where(d.kind == SCA, C, d.code)
        u = rng.random((len(active), 2))
        delay_h = rt.delay[row, k - 1]
        retry = (d.kind != APPROVED) & (u[:, 0] < rt.share[row]) & ~np.isnan(delay_h)
        if world.retries.explore > 0:  # extra draws only then: other logs stay byte-identical
            ux = rng.random((len(active), 2))
            grid = np.asarray(world.retries.explore_delays_h, float)
            pick = grid[np.minimum((ux[:, 1] * len(grid)).astype(np.int64), len(grid) - 1)]
            delay_h = np.where((ux[:, 0] < world.retries.explore) & ~rt.step_up[row]
                               & ~np.isnan(delay_h), pick, delay_h)  # fmt: skip
        jit = 1.0 + world.retries.jitter * (2.0 * u[:, 1] - 1.0)
        t_next = (
            t[active]
            + d.latency_ms
            + np.rint(np.nan_to_num(delay_h) * jit * HOUR_MS).astype(np.int64)
            + 1
        )
        retry &= t_next < world.end_ms
        nxt = active[retry]
        t[nxt] = t_next[retry]
        three_ds[nxt] |= rt.step_up[row[retry]]
        prev_route[nxt] = route[retry]
        prev_code[nxt] = d.code[retry]
        active = nxt
    return {key: np.concatenate([c[key] for c in out]) for key in out[0]}


def _run(world: World, n_pay: int, seed: int, chunk: int, oracle: bool,
         progress: Progress | None, target: int) -> dict[str, np.ndarray]:  # fmt: skip
    rt = _RetryTable(world)
    times = payment_times(world, n_pay, np.random.default_rng([seed, 0]))
    parts: list[dict[str, np.ndarray]] = []
    done = 0
    for c, a in enumerate(range(0, n_pay, chunk)):
        rng = np.random.default_rng([seed, 1, c])
        pay = np.arange(a, min(a + chunk, n_pay), dtype=np.int64)
        p = sample_payments(world, times[pay], rng)
        cols = _simulate_payments(world, p, pay, rng, rt, oracle)
        parts.append(cols)
        done += len(cols["pay"])
        if progress:
            progress("simulate", min(done, target), target)
    return {key: np.concatenate([c[key] for c in parts]) for key in parts[0]}


def _size_payments(world: World, attempts: int, seed: int) -> int:
    """Payments needed for `attempts` attempts, from a seeded pilot of the same world."""
    n = min(max(attempts // 5, 5_000), _PILOT_MAX)
    rng = np.random.default_rng([seed, 99])
    p = sample_payments(world, payment_times(world, n, rng), rng)
    cols = _simulate_payments(world, p, np.arange(n), rng, _RetryTable(world), oracle=False)
    ratio = len(cols["pay"]) / n
    return math.ceil(attempts / ratio * _OVERSIZE) + 16


# ---------------------------------------------------------------- tables
def _labels(values: list[Any], idx: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(np.asarray(idx, np.int64)))


def _nullable(values: list[str], idx: np.ndarray) -> pa.Array:
    """Labels with -1 meaning null."""
    idx = np.asarray(idx, np.int64)
    return _labels([*values, None], np.where(idx < 0, len(values), idx))


def _ids(prefix: str, pay: np.ndarray, attempt: np.ndarray | None = None) -> pa.Array:
    import pyarrow.compute as pc

    s = pc.utf8_lpad(pa.array(pay).cast(pa.string()), 9, "0")
    s = pc.binary_join_element_wise(prefix, s, "-p")
    if attempt is not None:
        s = pc.binary_join_element_wise(s, pa.array(attempt).cast(pa.string()), "-")
    return s


def _candidates(
    world: World, merchant: np.ndarray, card: np.ndarray, amount: np.ndarray
) -> pa.Array:
    k = world.merchant_ncand[merchant]
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    row = np.repeat(np.arange(len(merchant)), k)
    pos = np.arange(len(row)) - offsets[:-1][row]
    r = world.merchant_cand[merchant[row], pos]
    ic = world.issuer_country[world.card_issuer[card[row]]]
    bps = world.route_fee_bps[r] + (world.route_country[r] != ic) * world.route_xb_bps[r]
    fee = np.rint(world.route_fee_fixed[r] + amount[row] * bps / 1e4).astype(np.int64)
    struct = pa.StructArray.from_arrays(
        [
            _labels(world.route_ids, r),
            pa.array(fee, pa.int64()),
            _labels([r.acquirer_country for r in world.routes], r),
        ],
        names=["route_id", "fee_minor", "acquirer_country"],
    )
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def _tables(world: World, c: Mapping[str, np.ndarray], prefix: str) -> dict[str, pa.Table]:
    m, card = c["merchant"], c["card"]
    issuer = world.card_issuer[card]
    ms = world.merchants
    pay_ids = _ids(prefix, c["pay"])
    req_ids = _ids(prefix, c["pay"], c["attempt"])
    t = pa.array(c["t_ms"], pa.int64())
    bins = world.bin_labels
    common = {
        "card_fingerprint": _labels(world.card_fingerprint, card),
        "bin": _labels(bins, card),
        "network": _labels(list(NETWORKS), world.issuer_network[issuer]),
        "issuer_country": _labels(world.countries, world.issuer_country[issuer]),
        "merchant_id": _labels(world.merchant_ids, m),
        "amount_minor": pa.array(c["amount"], pa.int64()),
        "currency": _labels([x.currency for x in ms], m),
        "initiator": _labels(list(INITIATORS), c["mit"].astype(np.int64)),
    }
    attempt = pa.array(c["attempt"], pa.int32())
    three_ds = pa.array(c["three_ds"], pa.bool_())
    requests = pa.table({
        "request_id": req_ids, "payment_id": pay_ids, "attempt": attempt, "event_time": t,
        "merchant_id": common["merchant_id"], "mcc": _labels([x.mcc for x in ms], m),
        "merchant_country": _labels(world.countries, world.merchant_country[m]),
        "amount_minor": common["amount_minor"], "currency": common["currency"],
        "card_fingerprint": common["card_fingerprint"], "bin": common["bin"],
        "network": common["network"],
        "funding": _labels(list(FUNDING), world.card_funding[card]),
        "issuer_country": common["issuer_country"],
        "channel": _labels(list(CHANNELS), c["channel"]),
        "initiator": common["initiator"],
        "recurring": pa.array(c["recurring"], pa.bool_()),
        "sca_required": pa.array(c["sca_required"], pa.bool_()),
        "three_ds": three_ds,
        "sca_exemption": _labels(list(EXEMPTIONS), c["exemption"]),
        "candidates": _candidates(world, m, card, c["amount"].astype(float)),
        "previous_route": _nullable(world.route_ids, c["prev_route"]),
        "previous_response_code": _nullable(world.codes, c["prev_code"]),
    })  # fmt: skip
    attempts = {
        "request_id": req_ids, "payment_id": pay_ids, "attempt": attempt, "event_time": t,
        "merchant_id": common["merchant_id"],
        "route_id": _labels(world.route_ids, c["route"]),
        "propensity": pa.array(c["propensity"], pa.float64()),
        "policy": _labels([POLICY_NAME], np.zeros(len(m), np.int64)),
        "n_candidates": pa.array(world.merchant_ncand[m].astype(np.int32)),
        "true_p_approve": pa.array(c["p_true"], pa.float64()),
    }  # fmt: skip
    if "oracle_route" in c:
        attempts["oracle_route"] = _labels(world.route_ids, c["oracle_route"])
        attempts["oracle_p_approve"] = pa.array(c["oracle_p"], pa.float64())
    kind = c["kind"].astype(np.int64)
    latency = pa.array(c["latency"], pa.int32())
    outcomes = pa.table({
        "request_id": req_ids, "payment_id": pay_ids, "attempt": attempt,
        "event_time": pa.array(c["t_ms"] + c["latency"], pa.int64()), "request_time": t,
        "card_fingerprint": common["card_fingerprint"], "bin": common["bin"],
        "network": common["network"], "issuer_country": common["issuer_country"],
        "merchant_id": common["merchant_id"], "amount_minor": common["amount_minor"],
        "currency": common["currency"], "initiator": common["initiator"],
        "route_id": attempts["route_id"], "approved": pa.array(kind == APPROVED, pa.bool_()),
        "response_code": _labels(world.codes, c["code"]),
        "advice_code": _nullable(world.macs[1:], c["mac"] - 1),
        "latency_ms": latency,
        "failure_side": _labels(list(FAILURE_SIDE), kind),
        "three_ds": three_ds,
        "decline_kind": _labels(list(KINDS), kind),
    })  # fmt: skip
    return {"requests": requests, "attempts": pa.table(attempts), "outcomes": outcomes}


def _cards_table(world: World) -> pa.Table:
    """The card population with its hidden state (truth, for analysis)."""
    n = world.n_cards
    hard_names = {v: k for k, v in world.hard_state_code.items()}
    assert set(hard_names.values()) <= set(HARD_STATES)
    issuer = world.card_issuer[:n]
    return pa.table({
        "card_fingerprint": pa.array(world.card_fingerprint),
        "bin": pa.array([f"{b:06d}" for b in world.card_bin[:n]]),
        "issuer_id": _labels(world.issuer_ids, issuer),
        "network": _labels(list(NETWORKS), world.issuer_network[issuer]),
        "funding": _labels(list(FUNDING), world.card_funding[:n]),
        "issuer_country": _labels(world.countries, world.issuer_country[issuer]),
        "activity": pa.array(world.card_activity[:n]),
        "nsf_mult": pa.array(world.card_nsf[:n]),
        "hard_state": pa.array([hard_names.get(int(h)) for h in world.card_hard[:n]], pa.string()),
        "active_from_day": pa.array(world.card_active_day[:n]),
    })  # fmt: skip


def _write(world: World, cols: Mapping[str, np.ndarray], prefix: str, out: Path,
           progress: Progress | None) -> dict[str, Path]:  # fmt: skip
    """Tables in slices of WRITE_ROWS rows, one Parquet row group each: the Arrow string
    columns are the big allocation, so building them a slice at a time bounds memory."""
    n = len(cols["pay"])
    files = {name: out / f"{name}.parquet" for name in ("requests", "attempts", "outcomes")}
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for a in range(0, n, WRITE_ROWS):
            part = {k: v[a : a + WRITE_ROWS] for k, v in cols.items()}
            for name, table in _tables(world, part, prefix).items():
                if name not in writers:
                    writers[name] = pq.ParquetWriter(files[name], table.schema, compression="zstd")
                writers[name].write_table(table, row_group_size=WRITE_ROWS)
            if progress:
                progress("write", min(a + WRITE_ROWS, n), n)
    finally:
        for w in writers.values():
            w.close()
    files["cards"] = out / "cards.parquet"
    pq.write_table(_cards_table(world), files["cards"], compression="zstd")
    return files


# ---------------------------------------------------------------- entry point
def simulate(
    scenario: str | Path | Mapping[str, Any] | World,
    attempts: int,
    seed: int,
    out_dir: str | Path,
    config: Mapping[str, Any] | str | Path | None = None,
    progress: Progress | None = None,
    chunk_payments: int = CHUNK_PAYMENTS,
    oracle: bool = True,
) -> SimulationResult:
    """Simulate `attempts` attempts of a scenario with `seed`; write the log to `out_dir`.

    `scenario` is a preset name, a scenario JSON path, a spec dict or a built World; `config`
    (dict or JSON path) is deep-merged over it. `oracle=False` skips the per-attempt oracle
    columns (about a third of the compute) when only the log is wanted.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    t0 = time.perf_counter()
    world = (
        scenario if isinstance(scenario, World) else build_world(load_scenario(scenario, config))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_pay = _size_payments(world, attempts, seed)
    while True:
        cols = _run(world, n_pay, seed, chunk_payments, oracle, progress, attempts)
        if len(cols["pay"]) >= attempts:
            break
        n_pay = math.ceil(n_pay * attempts / len(cols["pay"]) * 1.02) + 16  # rare: pilot was off
    keep = np.lexsort((cols["attempt"], cols["pay"]))[:attempts]  # first N in payment order
    order = keep[np.lexsort((cols["attempt"][keep], cols["pay"][keep], cols["t_ms"][keep]))]
    cols = {k: v[order] for k, v in cols.items()}
    files = _write(world, cols, f"{world.name}-s{seed}", out, progress)
    meta = world.to_json()
    meta["run"] = {
        "seed": seed,
        "attempts": attempts,
        "payments": len(np.unique(cols["pay"])),
        "chunk_payments": chunk_payments,
        "logging_policy": POLICY_NAME,
        "start_ms": world.start_ms,
        "end_ms": world.end_ms,
        "approved": int((cols["kind"] == APPROVED).sum()),
        "files": {k: p.name for k, p in files.items()},
    }
    path = out / "world.json"
    path.write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    files["world"] = path
    return SimulationResult(out, attempts, meta["run"]["payments"], time.perf_counter() - t0, files)
