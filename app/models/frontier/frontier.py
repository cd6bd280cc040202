"""The quality-latency frontier of a sweep: pure functions over its candidates' figures.

A candidate is dominated when another is at least as good on value and at least as fast (p99
of one 4-route request) and strictly better on one of them. The recommendation under a latency
budget is the servable candidate (a compiled tree model: what the worker loads) with the most
value per 1,000 requests whose p99 fits the budget, ties to the faster.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Figures:
    name: str
    family: str  # lightgbm | xgboost | logistic | mlp
    servable: bool  # compiled to a library the worker serves
    log_loss: float
    ece: float
    roc_auc: float
    pr_auc: float
    approval_share: float  # of the oracle's first-attempt approval uplift over static routing
    value_share: float  # of the oracle's net value uplift
    value_per_1000: float  # net value (margin on approvals - fees) per 1,000 requests
    value_vs_static_ci: float  # 95% half-width of the paired per-1,000 difference to static
    p50_us: float  # one request, 4 candidate routes, through the serving call
    p99_us: float
    batch_us: float  # per request, in batches of 32 requests
    ratio_p50: float  # p50 / the raw compiled call measured in the same run
    size_bytes: int
    train_s: float
    compile_s: float
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dominates(a: Figures, b: Figures) -> bool:
    return (a.value_per_1000 >= b.value_per_1000 and a.p99_us <= b.p99_us
            and (a.value_per_1000 > b.value_per_1000 or a.p99_us < b.p99_us))  # fmt: skip


def pareto_front(cands: list[Figures]) -> list[Figures]:
    """The non-dominated candidates, fastest first."""
    front = [c for c in cands if not any(dominates(o, c) for o in cands if o is not c)]
    return sorted(front, key=lambda c: (c.p99_us, -c.value_per_1000))


def recommend(cands: list[Figures], budget_us: float) -> Figures | None:
    """The servable candidate with the most value whose p99 fits budget_us (None: none fits)."""
    fit = [c for c in cands if c.servable and c.p99_us <= budget_us
           and math.isfinite(c.value_per_1000)]  # fmt: skip
    if not fit:
        return None
    return max(fit, key=lambda c: (c.value_per_1000, -c.p99_us))
