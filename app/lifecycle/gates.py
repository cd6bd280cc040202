"""The pipeline's gates: pure rules over evaluation figures, each pass/refuse with its reason.

Gate 1 (before registration as challenger) compares the candidate with the champion on the
latest window of the training log: log loss, calibration (ECE) and an off-policy estimate of
value per attempt with its interval. Gate 2 (after the shadow window) reads what the candidate
did in shadow on live traffic: agreement with the champion, calibration where it agreed, and
the off-policy approval of its greedy routes against what the champion's routes achieved.

Defaults refuse a worse or a badly calibrated model and let a model through that is better or
no worse within noise: a retrain on an unchanged world should pass, a sabotaged one must not.
Thresholds come from a JSON file (`retrain --gates FILE`, the Gates field names) when the
defaults do not suit a deployment.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Gates:
    # Log loss may exceed the champion's by this much (absolute). 0.002 is ~0.4% of the ~0.45
    # a trained router reads on its test window; two fits of one log differ by ~0.0005.
    log_loss_tolerance: float = 0.002
    # ECE: an absolute ceiling, and at most this much above the champion's. A trained router
    # reads 0.006-0.012 on its test window; 10 bins on ~7k rows have a noise floor of ~0.01.
    max_ece: float = 0.03
    ece_tolerance: float = 0.01
    # Off-policy value per attempt (doubly robust, minor units): refuse when the candidate is
    # significantly worse than the champion, i.e. the upper end of the 95% interval of the
    # difference is below -value_tolerance x the champion's value. A point estimate alone does
    # not refuse: its noise is several percent of the value (app.lifecycle.evaluate measured it).
    value_tolerance: float = 0.0
    # Below this many informative attempts (logged on one model's pick and not the other's) the
    # estimate is reported but does not decide: ~3% exploration leaves a few hundred per window.
    min_effective_n: float = 100.0
    # Gate 2 (shadow).
    min_shadow_attempts: int = 200
    min_agreement: float = 0.2  # below: a broken model (a shifted world moves ~10-40%)
    max_shadow_ece: float = 0.04
    # Refuse when the shadow's off-policy approval is significantly below the logged one: the
    # upper end of its 95% interval under logged - approval_tolerance. Not the point estimate:
    # measured in the closed-loop test, 6,068 shadow attempts with 76% agreement rest on an
    # effective n of ~200, and read 0.848 [0.779, 0.917] against a logged 0.887.
    approval_tolerance: float = 0.0

    @classmethod
    def from_file(cls, path: Path) -> Gates:
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown gate(s) {unknown}; known: {sorted(known)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    decisive: bool = True  # False: reported, not deciding (too little evidence)


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks if c.decisive)

    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.decisive and not c.passed]

    def render(self) -> str:
        marks = {True: "pass", False: "REFUSE"}
        return "\n".join(
            f"- {c.name}: {marks[c.passed] if c.decisive else 'not decisive'} ({c.detail})"
            for c in self.checks
        )


@dataclass(frozen=True)
class ModelFigures:
    """One model on the evaluation window."""

    log_loss: float
    ece: float
    value: float  # off-policy value per attempt of its greedy policy (nan: not estimated)


@dataclass(frozen=True)
class ValueDiff:
    """Candidate minus champion, off-policy, paired on the same logged attempts."""

    diff: float
    lo: float
    hi: float
    effective_n: float


def offline_gate(g: Gates, cand: ModelFigures, champ: ModelFigures | None,
                 diff: ValueDiff | None, baseline_log_loss: float) -> Verdict:  # fmt: skip
    """Gate 1. Without a champion the candidate must beat the success-rate baseline's log loss
    and be calibrated; the value check needs a champion to compare with."""
    checks = []
    if champ is None:
        checks.append(Check("log loss", cand.log_loss < baseline_log_loss,
                            f"{cand.log_loss:.4f} vs success-rate baseline "
                            f"{baseline_log_loss:.4f}"))  # fmt: skip
    else:
        limit = champ.log_loss + g.log_loss_tolerance
        checks.append(Check("log loss", cand.log_loss <= limit,
                            f"{cand.log_loss:.4f} vs champion {champ.log_loss:.4f} "
                            f"(+{g.log_loss_tolerance:g} allowed)"))  # fmt: skip
    ece_limit = g.max_ece if champ is None else min(g.max_ece, champ.ece + g.ece_tolerance)
    checks.append(Check("calibration", cand.ece <= ece_limit,
                        f"ECE {cand.ece:.4f}, limit {ece_limit:.4f}"
                        + ("" if champ is None else f" (champion {champ.ece:.4f})")))  # fmt: skip
    if champ is not None and diff is not None:
        floor = -g.value_tolerance * abs(champ.value) if math.isfinite(champ.value) else 0.0
        ok = diff.hi >= floor
        enough = diff.effective_n >= g.min_effective_n
        checks.append(Check(
            "off-policy value", ok,
            f"{diff.diff:+.2f} per attempt [{diff.lo:+.2f}, {diff.hi:+.2f}] vs champion "
            f"{champ.value:.2f}, {diff.effective_n:.0f} informative attempts"
            + ("" if enough else f" < {g.min_effective_n:.0f}"), decisive=enough))  # fmt: skip
    return Verdict(tuple(checks))


@dataclass(frozen=True)
class ShadowFigures:
    attempts: int
    agreement: float
    ece: float  # where it agreed with the champion
    approval: float  # off-policy (SNIPS) approval of its greedy routes
    approval_lo: float
    approval_hi: float
    logged_approval: float  # what the champion's routes achieved on the same attempts
    effective_n: float


def shadow_gate(g: Gates, f: ShadowFigures) -> Verdict:
    """Gate 2, on the challenger's shadow window."""
    enough = f.attempts >= g.min_shadow_attempts
    checks = [
        Check("shadow attempts", enough, f"{f.attempts} (need {g.min_shadow_attempts})"),
        Check("agreement", f.agreement >= g.min_agreement,
              f"{f.agreement:.1%} of attempts on the champion's route (min "
              f"{g.min_agreement:.0%})"),
        Check("shadow calibration", math.isfinite(f.ece) and f.ece <= g.max_shadow_ece,
              f"ECE {f.ece:.4f} where it agreed (max {g.max_shadow_ece:g})"),
        Check("shadow off-policy approval",
              f.approval_hi >= f.logged_approval - g.approval_tolerance,
              f"{f.approval:.3f} [{f.approval_lo:.3f}, {f.approval_hi:.3f}] vs logged "
              f"{f.logged_approval:.3f}, effective n {f.effective_n:.0f}",
              decisive=f.effective_n >= g.min_effective_n),
    ]  # fmt: skip
    return Verdict(tuple(checks))
