"""Simulator event logs whose truth is known, for the experiment, shadow and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from app.experiments.assignment import arm_for
from app.experiments.eventlog import write_event_log
from app.sim import choose_routes, draw_many, p_approve_matrix
from app.sim.traffic import payment_times, sample_payments, to_batch
from app.sim.truth import APPROVED, fee_matrix

ARMS = [("control", 50), ("treatment", 50)]
CHAMPION, CHALLENGER = "champion/1", "challenger/2"


@dataclass
class Log:
    decisions: pa.Table
    outcomes: pa.Table
    shadow: pa.Table
    challenger_truth: float  # mean true p_approve of the challenger's routes (first attempts)
    drawn: dict[str, tuple[int, int, int]]  # arm -> (payments, approved payments, attempts)
    agreement: float  # challenger's route == logged route, first attempts


def _scores(world, merchant: np.ndarray, p_hat: np.ndarray, fees: np.ndarray) -> pa.Array:
    """RoutingDecision.scores per row: every candidate of the row's merchant, score = p."""
    k = world.merchant_ncand[merchant]
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    row = np.repeat(np.arange(len(merchant)), k)
    r = world.merchant_cand[merchant[row], np.arange(len(row)) - offsets[:-1][row]]
    p = p_hat[row, r]
    struct = pa.StructArray.from_arrays(
        [pa.array(np.array(world.route_ids)[r]), pa.array(p), pa.array(p),
         pa.array(fees[row, r].astype(np.int64)), pa.array(np.zeros(len(r), np.int32)),
         pa.array(np.zeros(len(r), bool))],
        names=["route_id", "p_approve", "score", "fee_minor", "samples", "eliminated"],
    )  # fmt: skip
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def simulate_log(world, seed: int, n: int, epsilon: float = 0.5, noise: float = 0.03,
                 challenger_bias: float = 0.0, retry: dict[str, float] | None = None,
                 arms=None) -> Log:  # fmt: skip
    """First attempts routed by the simulator's epsilon-greedy logging policy (exact
    propensities), outcomes drawn from the truth, a shadow challenger that routes greedily on
    a noisy copy of the true p_approve (plus a bias, to make it miscalibrated), and for the
    experiment a second attempt on another route with an arm-dependent probability."""
    rng = np.random.default_rng(seed)
    pay = sample_payments(world, payment_times(world, n, rng), rng)
    b = to_batch(world, pay)
    P = p_approve_matrix(world, b)
    fees = fee_matrix(world, b)
    m = pay.merchant
    route, prop = choose_routes(world, m, rng, epsilon=epsilon)
    ok = draw_many(world, b, route, rng).kind == APPROVED
    p_ch = np.clip(P + rng.normal(0, noise, P.shape), 0.001, 0.999)
    p_champ = np.clip(P + rng.normal(0, noise, P.shape), 0.001, 0.999)
    cand = np.zeros_like(P, bool)
    for r in range(P.shape[1]):
        cand[:, r] = (world.merchant_cand[m] == r).any(1)
    greedy = np.where(cand, p_ch - 1e-9 * fees, -1).argmax(1)  # ties (p clipped) to cheaper
    pids = np.char.add(f"s{seed}-p", np.arange(n).astype(str))
    arm = np.array([arm_for(p, arms) for p in pids.tolist()] if arms else ["default"] * n)
    # retries: a declined payment tries another candidate with its arm's probability
    retry_p = np.array([(retry or {}).get(a, 0.0) for a in arm.tolist()])
    second = ~ok & (rng.random(n) < retry_p)
    idx = np.flatnonzero(second)
    k = world.merchant_ncand[m[idx]]
    pos = np.argmax(world.merchant_cand[m[idx]] == route[idx, None], 1)
    pos = (pos + 1 + (rng.random(len(idx)) * (k - 1)).astype(int)) % k
    route2 = world.merchant_cand[m[idx], pos]
    ok2 = draw_many(world, b.take(idx), route2, rng).kind == APPROVED

    rows = np.concatenate([np.arange(n), idx])
    attempt = np.concatenate([np.ones(n, np.int32), np.full(len(idx), 2, np.int32)])
    rids = np.char.add(np.char.add(pids[rows], "-"), attempt.astype(str))
    routes = np.array(world.route_ids)
    chosen = np.concatenate([route, route2])
    decided = pay.t_ms[rows] + attempt
    common = {"request_id": rids, "payment_id": pids[rows], "attempt": attempt,
              "decided_at": decided}  # fmt: skip
    decisions = pa.table({
        **common, "chosen_route": routes[chosen],
        "scores": _scores(world, m[rows], p_champ[rows], fees[rows]),
        "propensity": np.concatenate([prop, 1.0 / (k - 1)]),
        "policy": np.full(len(rows), "epsilon_default"), "arm": arm[rows],
        "model_version": np.full(len(rows), CHAMPION),
        "reason_codes": pa.array([[]] * len(rows), pa.list_(pa.string())),
        "decision_latency_us": np.full(len(rows), 100),
    })  # fmt: skip
    outcomes = pa.table({
        **common, "approved": np.concatenate([ok, ok2]),
        "amount_minor": pay.amount[rows], "route_id": routes[chosen],
    })  # fmt: skip
    p_shadow = np.clip(p_ch + challenger_bias, 0.001, 0.999)
    first = decisions.slice(0, n)
    shadow = (first.set_column(4, "chosen_route", pa.array(routes[greedy]))
              .set_column(5, "scores", _scores(world, m, p_shadow, fees))
              .set_column(6, "propensity", pa.array(np.ones(n)))
              .set_column(8, "arm", pa.array(np.full(n, "shadow")))
              .set_column(9, "model_version", pa.array(np.full(n, CHALLENGER))))  # fmt: skip
    approved_pay = ok.copy()
    approved_pay[idx] |= ok2
    drawn = {}
    for a in np.unique(arm).tolist():
        s = arm == a
        drawn[a] = (int(s.sum()), int(approved_pay[s].sum()), int(s.sum() + second[s].sum()))
    truth = float(P[np.arange(n), greedy].mean())
    agree = float((greedy == route).mean())
    return Log(decisions, outcomes, shadow, truth, drawn, agree)


def write_log(tmp_path: Path, log: Log, fmt: str = "parquet") -> Path:
    write_event_log(tmp_path, log.decisions, log.outcomes, log.shadow, fmt=fmt)
    return tmp_path
