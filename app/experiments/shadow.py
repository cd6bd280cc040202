"""Shadow analysis: what each challenger would have done on the champion's logged attempts.

Per challenger (model_version on the shadow topic), per attempt: agreement with the champion's
final route, calibration of its p_approve where it agreed, and off-policy estimates (IPS,
SNIPS, DR) of the approval its greedy route would have had, from the champion's propensities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.experiments.assignment import SHADOW_ARM
from app.experiments.eventlog import EventLog, ReportError, attempts_table, long_scores, score_of
from app.experiments.stats import (
    ECE_BINS,
    Interval,
    OffPolicy,
    Reliability,
    off_policy,
    reliability,
    wilson_ci,
)


@dataclass(frozen=True)
class ChallengerStats:
    model_version: str
    attempts: int  # champion attempts with an outcome and this challenger's shadow decision
    agreement: Interval  # challenger's chosen route == champion's final route
    calibration: Reliability  # challenger's p_approve where it agreed, against the outcome
    logged_approval: Interval  # what the champion's routes achieved on the same attempts
    greedy_agreement: float  # share where the challenger's best route is the logged one
    estimate: OffPolicy  # approval per attempt of the challenger's greedy route
    bad_propensity: int  # rows left out of the estimate: propensity missing or not in (0, 1]


@dataclass(frozen=True)
class ShadowReport:
    source: str
    champion_attempts: int
    challengers: list[ChallengerStats]
    dropped: dict[str, int]


def greedy_routes(scores: pd.Series) -> np.ndarray:
    """The route each decision's policy ranks first, without exploration (None for an empty
    list). The rule of app.routing.choice.choose, vectorized (a contract test holds the two
    equal): highest score among the non-eliminated routes (all when every route is), ties to
    the cheaper, then to the earlier candidate."""
    parent, pos, c = long_scores(scores)
    out = np.full(len(scores), None, object)
    if not len(parent):
        return out
    elig = ~c["eliminated"]
    any_elig = np.bincount(parent, elig, minlength=len(scores)) > 0
    elig |= ~any_elig[parent]
    order = np.lexsort((pos, c["fee_minor"], -c["score"], ~elig, parent))
    first = order[np.r_[True, parent[order][1:] != parent[order][:-1]]]
    out[parent[first]] = c["route_id"][first]
    return out


def challenger_stats(
    model_version: str, attempts: pd.DataFrame, shadow: pd.DataFrame, bins: int = ECE_BINS
) -> ChallengerStats:
    """Agreement, calibration and off-policy approval of one challenger on the logged attempts.

    The target policy is the challenger's greedy route (pi = 1 on it). Its exploration draw is
    not used: it hashes the same request id as the champion's, so the two explore together
    and an indicator of the challenger's explored pick would be correlated with the log.
    DR's reward model is the challenger's own p_approve (DR stays unbiased when it is wrong)."""
    sh = shadow[["request_id", "chosen_route", "scores", "p_chosen"]]
    j = attempts.merge(sh, on="request_id", suffixes=("", "_ch"), validate="one_to_one")
    n = len(j)
    agree = (j["chosen_route"] == j["chosen_route_ch"]).to_numpy()
    y = j["approved"].to_numpy(float)
    cal = reliability(y[agree], j["p_chosen_ch"].to_numpy()[agree], bins)
    greedy = greedy_routes(j["scores_ch"])
    q = score_of(greedy, j["scores_ch"])[:, 0]
    q_logged = score_of(j["chosen_route"], j["scores_ch"])[:, 0]
    pi = (j["chosen_route"].to_numpy(object) == greedy).astype(float)
    mu = j["propensity"].to_numpy(float)
    ok = (mu > 0) & (mu <= 1) & np.isfinite(mu)
    q_logged = np.where(np.isfinite(q_logged), q_logged, q)  # only where pi = 0 (w = 0)
    est = off_policy(y[ok], mu[ok], pi[ok], q_logged[ok], q[ok])
    return ChallengerStats(
        model_version,
        n,
        wilson_ci(int(agree.sum()), n),
        cal,
        wilson_ci(int(y.sum()), n),
        float(pi.mean()) if n else math.nan,
        est,
        int((~ok).sum()),
    )


def shadow_report(
    log: EventLog, challenger: str | None = None, bins: int = ECE_BINS
) -> ShadowReport:
    """One ChallengerStats per model_version on the shadow log (or only `challenger`)."""
    att = attempts_table(log)
    att = att[att["arm"] != SHADOW_ARM]
    sh = log.shadow
    if not len(sh):
        raise ReportError(f"{log.source}: no shadow decisions")
    versions = sorted(sh["model_version"].fillna("unknown").unique())
    if challenger is not None:
        if challenger not in versions:
            raise ReportError(f"challenger {challenger!r} has no shadow decisions; {versions}")
        versions = [challenger]
    out = []
    for v in versions:
        s = challenger_stats(v, att, sh[sh["model_version"].fillna("unknown") == v], bins)
        if s.attempts == 0:
            raise ReportError(
                f"challenger {v}: no shadow decision matches a decided attempt "
                "with an outcome (joined on request_id)"
            )
        out.append(s)
    return ShadowReport(log.source, len(att), out, dict(log.dropped))
