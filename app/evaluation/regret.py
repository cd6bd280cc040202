"""Where a router loses to the oracle: its first-attempt regret, split by how it chose and by
which route it took where the oracle took another, with its own estimate of both routes.

Per first attempt the oracle takes the route of highest true expected value (p x margin - fee,
app.evaluation.adaptation.oracle_routes); the regret is what that route's true EV (and true p)
exceeds the chosen route's by. Split:
- by kind: the router's own best (EXPLOIT), its exploration (EXPLORE: the uniform share or a
  posterior draw) and route health's probes of a demoted route (PROBE): exploration and
  probes cost by design, a wrong best is the model's error;
- over the wrong bests, the router's p minus the truth on the route it took and on the
  oracle's: an estimate right on the chosen route and low on the oracle's is a route the model
  undervalues, not one it overvalues (stop 40: steady, history 101, +0.1 and -7.3 points: the
  model read routes that no merchant defaults to 5-10 points under their truth);
- by (chosen, oracle) route pair and by issuer country x network, the largest first.
Pure over arrays (`decompose`); `analyse` builds them from the runs and the simulator's truth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.evaluation.loop import EXPLOIT, EXPLORE, PROBE, PolicyRun
from app.sim.truth import batch_from_columns, p_approve_matrix
from app.sim.world import World

KINDS = {EXPLOIT: "exploit", EXPLORE: "explore", PROBE: "probe"}
TOP = 5  # rows of the pair and segment tables


@dataclass(frozen=True)
class Part:
    """A slice of the first attempts: its count, its share of all the regret in value, the
    regret it adds per first attempt of the whole run (points of approval, minor units of EV)
    and, where the router chose another than the oracle by its best, the mean router p minus
    the true p on the chosen and on the oracle's route (NaN: none)."""

    label: str
    n: int
    share: float
    approval_pp: float
    value: float
    err_chosen_pp: float = float("nan")
    err_oracle_pp: float = float("nan")


@dataclass(frozen=True)
class Regret:
    policy: str
    n: int  # first attempts (pooled over seeds)
    on_oracle: float  # share on the oracle's route
    approval_pp: float  # mean true p of the oracle's route minus the chosen one, points
    value: float  # mean true EV lost, minor units per first attempt
    kinds: list[Part] = field(default_factory=list)
    wrong: Part | None = None  # EXPLOIT rows off the oracle's route
    pairs: list[Part] = field(default_factory=list)  # label "chosen -> oracle"
    segments: list[Part] = field(default_factory=list)  # label "issuer_country network"


@dataclass(frozen=True)
class Choices:
    """What every first attempt could have done, by world route index (n x R): true p, fee,
    candidate mask; the value of an approval per attempt."""

    p_true: np.ndarray
    value: np.ndarray
    fees: np.ndarray
    cand: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[Choices]) -> Choices:
        """Several runs' attempts as one (seeds pooled)."""
        return cls(*(np.concatenate([getattr(c, f) for c in parts])
                     for f in ("p_true", "value", "fees", "cand")))  # fmt: skip

    def true_ev(self) -> np.ndarray:
        """p x value - fee, -inf off the candidates: the oracle takes the argmax."""
        return np.where(self.cand, self.p_true * self.value[:, None] - self.fees, -np.inf)


def choices(world: World, payments: Sequence[dict[str, Any]], margin_bps: float) -> Choices:
    """The simulator's truth for each payment's first attempt at its time."""
    cols = {k: [p[k] for p in payments] for k in payments[0]}
    p_true = p_approve_matrix(world, batch_from_columns(world, cols))
    fees = np.zeros_like(p_true)
    cand = np.zeros(p_true.shape, bool)
    for i, p in enumerate(payments):
        for c in p["candidates"]:
            r = world.route_idx[c["route_id"]]
            fees[i, r], cand[i, r] = c["fee_minor"], True
    value = np.asarray(cols["amount_minor"], float) * margin_bps / 1e4
    return Choices(p_true, value, fees, cand)


def decompose(policy: str, truth: Choices, p_router: np.ndarray, chosen: np.ndarray,
              kind: np.ndarray, segments: Sequence[str], route_ids: Sequence[str],
              top: int = TOP) -> Regret:  # fmt: skip
    """The regret of one policy's first attempts: `truth` and the router's p per attempt and
    world route (n x R; NaN where it gave none), the chosen route index, its kind and its
    segment label per attempt."""
    n = len(chosen)
    rows = np.arange(n)
    p_true = truth.p_true
    ev = truth.true_ev()
    best = ev.argmax(axis=1)
    loss = ev[rows, best] - ev[rows, chosen]
    dp = p_true[rows, best] - p_true[rows, chosen]
    total = float(loss.sum())
    err_c = p_router[rows, chosen] - p_true[rows, chosen]
    err_o = p_router[rows, best] - p_true[rows, best]

    def part(label: str, m: np.ndarray, errors: bool = False) -> Part:
        k = int(m.sum())
        ec = eo = float("nan")
        if errors:
            w = m & (chosen != best) & (kind == EXPLOIT) & np.isfinite(err_c) & np.isfinite(err_o)
            if w.any():
                ec, eo = float(err_c[w].mean() * 100), float(err_o[w].mean() * 100)
        return Part(label, k, float(loss[m].sum() / total) if total > 0 else 0.0,
                    float(dp[m].sum() / max(n, 1) * 100), float(loss[m].sum() / max(n, 1)),
                    ec, eo)  # fmt: skip

    kinds = [part(name, kind == k) for k, name in KINDS.items() if (kind == k).any()]
    off = chosen != best
    wrong = part("exploit, off the oracle's route", off & (kind == EXPLOIT), errors=True)

    def ranked(labels: np.ndarray) -> list[Part]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i in np.flatnonzero(off):
            groups[str(labels[i])].append(int(i))
        by_loss = sorted(groups, key=lambda g: -float(loss[groups[g]].sum()))
        out = []
        for g in by_loss[:top]:
            m = np.zeros(n, bool)
            m[groups[g]] = True
            out.append(part(g, m, errors=True))
        return out

    names = np.asarray(route_ids, dtype=object)
    pair = names[chosen] + " -> " + names[best]
    return Regret(policy, n, float((~off).mean()) if n else float("nan"),
                  float(dp.mean() * 100) if n else 0.0, float(loss.mean()) if n else 0.0,
                  kinds, wrong, ranked(pair),
                  ranked(np.asarray(segments, dtype=object)))  # fmt: skip


def analyse(world: World, payments: Mapping[int, list[dict[str, Any]]],
            runs: list[PolicyRun], margin_bps: float,
            oracle: str = "oracle") -> list[Regret]:  # fmt: skip
    """Per policy whose decisions carry a p (pooled over its seeds), the regret of its first
    attempts against the oracle of the same world (the `oracle` router's own runs left out:
    its p is the truth)."""
    truth = {s: choices(world, pays, margin_bps) for s, pays in payments.items()}
    seg = {s: [f"{p['issuer_country']} {p['network']}" for p in pays]
           for s, pays in payments.items()}  # fmt: skip
    out = []
    names = [n for n in dict.fromkeys(r.policy for r in runs) if n.partition("+")[0] != oracle]
    for name in names:
        mine = sorted((r for r in runs if r.policy == name and r.seed in truth),
                      key=lambda r: r.seed)  # fmt: skip
        logs = [r.log for r in mine if r.log is not None]
        if not mine or len(logs) < len(mine) or not any(np.isfinite(r.first_p).any()
                                                        for r in mine):  # fmt: skip
            continue  # a policy without estimates (static): nothing to attribute
        chosen = np.concatenate([g.route[g.first()].astype(np.int64) for g in logs])
        out.append(decompose(name, Choices.concat([truth[r.seed] for r in mine]),
                             np.concatenate([r.first_p for r in mine]), chosen,
                             np.concatenate([r.first_kind for r in mine]),
                             [x for r in mine for x in seg[r.seed]], world.route_ids))  # fmt: skip
    return out


def _row(p: Part) -> str:
    cells = [
        p.label,
        f"{p.n:,}",
        f"{p.share:.0%}",
        f"{p.approval_pp:+.2f}",
        f"{p.value:.1f}",
        *(f"{e:+.1f}" if np.isfinite(e) else "n/a" for e in (p.err_chosen_pp, p.err_oracle_pp)),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown(rs: list[Regret]) -> list[str]:
    """The report's "Where the router loses to the oracle" subsection (no lines when empty)."""
    if not rs:
        return []
    lines = [
        "### Where the router loses to the oracle (first attempts)",
        "",
        "Regret = the true expected value (and true p) of the oracle's route minus the "
        "chosen route's, per first attempt (app/evaluation/regret.py). `share` = of all "
        "the value lost; `approval pp` and `EV` = what the slice costs per first attempt "
        "of the whole run. `p error` = the router's p minus the truth on the route it "
        "took and on the oracle's, where its own best was another route: a wrong best "
        "with the error on the oracle's route is a route the model undervalues.",
        "",
    ]
    head = (
        "| slice | first attempts | share | approval pp | EV | p error chosen (pp) "
        "| p error oracle's (pp) |"
    )
    for r in rs:
        lines += [f"**{r.policy}**: {r.on_oracle:.0%} of {r.n:,} first attempts on the "
                  f"oracle's route; regret {r.approval_pp:.2f} points of approval, "
                  f"{r.value:.1f} of EV per first attempt.", "",
                  head, "|---" * 7 + "|"]  # fmt: skip
        parts = [
            *r.kinds,
            *([r.wrong] if r.wrong is not None else []),
            *(replace(p, label=f"pair {p.label}") for p in r.pairs),
            *(replace(p, label=f"segment {p.label}") for p in r.segments),
        ]
        lines += [_row(p) for p in parts]
        lines.append("")
    return lines


def to_json(rs: list[Regret]) -> list[dict[str, Any]]:
    def part(p: Part | None) -> dict[str, Any] | None:
        return None if p is None else dict(p.__dict__)

    return [{"policy": r.policy, "n": r.n, "on_oracle": r.on_oracle,
             "approval_pp": r.approval_pp, "value": r.value,
             "kinds": [part(k) for k in r.kinds], "wrong_best": part(r.wrong),
             "pairs": [part(p) for p in r.pairs], "segments": [part(p) for p in r.segments]}
            for r in rs]  # fmt: skip
