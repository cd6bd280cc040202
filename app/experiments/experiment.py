"""A/B analysis: per-arm figures and every arm against the control.

Units: the arm is assigned per payment (assignment.arm_for), so the tests and guardrails compare
payments; rates per attempt are shown for context (attempts of one payment are not
independent). Approval per payment: two-proportion z-test for one look fixed in advance and an
always-valid mSPRT p-value for peeking; attempts and fees per payment: non-inferiority
guardrails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.experiments.assignment import HOLDOUT_ARM
from app.experiments.eventlog import EventLog, ReportError, attempts_table
from app.experiments.stats import (
    Interval,
    ZTest,
    diff_of_means,
    guardrail,
    mean_ci,
    sequential_p_values,
    two_proportion_z,
    wilson_ci,
)


@dataclass(frozen=True)
class ArmStats:
    arm: str
    payments: int
    attempts: int
    approved_payments: int
    approved_attempts: int
    approval_per_payment: Interval
    approval_per_attempt: Interval
    approved_value_minor: float
    approved_value_per_payment: Interval
    attempts_per_payment: Interval
    fees_per_payment: Interval


@dataclass(frozen=True)
class Guardrail:
    metric: str
    diff: Interval  # arm - control, higher is worse
    margin: float  # absolute, in the metric's unit
    verdict: str


@dataclass(frozen=True)
class Comparison:
    arm: str
    control: str
    z: ZTest  # approval per payment, arm - control
    always_valid_p: float  # mSPRT running minimum over the looks
    guardrails: list[Guardrail]


@dataclass(frozen=True)
class Sequential:
    arm: str
    payments: np.ndarray  # payments of both arms seen at each look
    always_valid: np.ndarray
    naive: np.ndarray  # the repeated z-test's p-value at each look (invalid under peeking)


@dataclass(frozen=True)
class ExperimentReport:
    source: str
    control: str | None
    arms: dict[str, ArmStats]
    comparisons: list[Comparison]
    sequential: list[Sequential]
    pending: int  # decisions with no outcome yet (left out)
    orphans: int  # outcomes with no decision (left out)
    mixed_arm_payments: int  # payments whose attempts carry two arms: should be 0
    dropped: dict[str, int]


GUARDRAILS = ("attempts_per_payment", "fees_per_payment")


def payments_table(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per payment: arm, attempts, approved, approved value, fees, first decision time."""
    a = attempts.sort_values(["payment_id", "attempt", "decided_at"])
    a = a.assign(value=a["amount_minor"] * a["approved"], fee=a["fee_chosen"].fillna(0.0))
    g = a.groupby("payment_id", sort=False)
    return pd.DataFrame(
        {
            "arm": g["arm"].first(),
            "arms": g["arm"].nunique(),
            "attempts": g.size(),
            "approved": g["approved"].any(),
            "approved_attempts": g["approved"].sum(),
            "approved_value": g["value"].max(),
            "fees": g["fee"].sum(),
            "first_at": g["decided_at"].min(),
        }
    )


def _arm_stats(arm: str, p: pd.DataFrame) -> ArmStats:
    n, k = len(p), int(p["attempts"].sum())
    x, xa = int(p["approved"].sum()), int(p["approved_attempts"].sum())
    return ArmStats(
        arm,
        n,
        k,
        x,
        xa,
        wilson_ci(x, n),
        wilson_ci(xa, k),
        float(p["approved_value"].sum()),
        mean_ci(p["approved_value"].to_numpy()),
        mean_ci(p["attempts"].to_numpy()),
        mean_ci(p["fees"].to_numpy()),
    )


def _sequential(
    arm: str, ctl: pd.DataFrame, trt: pd.DataFrame, looks: int, tau2: float
) -> Sequential:
    """Cumulative counts at `looks` evenly spaced quantiles of the first-decision times."""
    t1 = ctl.sort_values("first_at")
    t2 = trt.sort_values("first_at")
    at = np.quantile(
        np.concatenate([t1["first_at"], t2["first_at"]]), np.linspace(0, 1, looks + 1)[1:]
    )
    n1 = np.searchsorted(t1["first_at"].to_numpy(), at, side="right")
    n2 = np.searchsorted(t2["first_at"].to_numpy(), at, side="right")
    c1 = np.concatenate([[0], np.cumsum(t1["approved"].to_numpy())])[n1]
    c2 = np.concatenate([[0], np.cumsum(t2["approved"].to_numpy())])[n2]
    naive = np.array(
        [
            two_proportion_z(a, m, b, k).p_value if m and k else 1.0
            for a, m, b, k in zip(c1, n1, c2, n2, strict=True)
        ]
    )
    return Sequential(arm, n1 + n2, sequential_p_values(c1, n1, c2, n2, tau2), naive)


def experiment_report(
    log: EventLog,
    control: str | None = None,
    guardrail_margin: float = 0.02,
    looks: int = 50,
    tau2: float = 1e-4,
) -> ExperimentReport:
    """Per-arm figures and every arm against the control (guardrail_margin: relative to the
    control's mean, e.g. 0.02 = attempts or fees per payment may rise by at most 2%)."""
    att = attempts_table(log)
    if not len(att):
        raise ReportError(f"{log.source}: no decision has an outcome (joined on request_id)")
    pay = payments_table(att)
    arms = sorted(pay["arm"].unique())
    if control is None and len(arms) > 1:
        control = next((a for a in ("control", HOLDOUT_ARM) if a in arms), None)
        if control is None:
            raise ReportError(f"no arm named control or holdout: pass --control, one of {arms}")
    if control is not None and control not in arms:
        raise ReportError(f"control arm {control!r} has no payments; arms: {arms}")
    by_arm = {a: pay[pay["arm"] == a] for a in arms}
    stats = {a: _arm_stats(a, p) for a, p in by_arm.items()}
    comps, seqs = [], []
    for a in arms:
        if control is None or a == control:
            continue
        ctl, trt = by_arm[control], by_arm[a]
        s_ctl, s_trt = stats[control], stats[a]
        seq = _sequential(a, ctl, trt, looks, tau2)
        rails = []
        for metric, col in zip(GUARDRAILS, ("attempts", "fees"), strict=True):
            d = diff_of_means(ctl[col].to_numpy(), trt[col].to_numpy())
            margin = guardrail_margin * getattr(s_ctl, metric).mean
            rails.append(Guardrail(metric, d, margin, guardrail(d, margin)))
        z = two_proportion_z(
            s_ctl.approved_payments, s_ctl.payments, s_trt.approved_payments, s_trt.payments
        )
        comps.append(Comparison(a, control, z, float(seq.always_valid[-1]), rails))
        seqs.append(seq)
    orphans = int((~log.outcomes["request_id"].isin(log.decisions["request_id"])).sum())
    return ExperimentReport(
        log.source,
        control,
        stats,
        comps,
        seqs,
        len(log.decisions) - len(att),
        orphans,
        int((pay["arms"] > 1).sum()),
        dict(log.dropped),
    )
