"""Retry policies by name: the one list the settings (AUTHPILOT_RETRY_POLICY), the worker's
retry step and the evaluator build from.

A retry policy answers `after_decline(outcome, counters, now_ms, attempt_fee)` with a
RetryDecision body; `attempt_fee` is the fee of the route the declined attempt went through
(None when unknown: the engine's configured attempt cost stands in).
The evaluator's `engine_fitted` is the engine with a recovery table fitted on the history, as
a worker runs it with AUTHPILOT_RETRY_RECOVERY_FILE: a parameterization, not another policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from app.retry import engine, fixed_schedule
from app.retry.engine import RetryParams, decide_retry
from app.retry.rules import Counters, NetworkRules

RetryPolicyName = Literal["engine", "fixed_schedule"]
NAMES: tuple[str, ...] = get_args(RetryPolicyName)


class RetryPolicy(Protocol):
    @property
    def name(self) -> str: ...  # read-only: the implementations are frozen dataclasses

    def after_decline(self, outcome: dict[str, Any], counters: Counters, now_ms: int,
                      attempt_fee: float | None = None) -> dict[str, Any]: ...  # fmt: skip


@dataclass(frozen=True)
class EngineRetry:
    rules: NetworkRules
    params: RetryParams
    name: str = engine.POLICY_NAME

    def after_decline(self, outcome: dict[str, Any], counters: Counters, now_ms: int,
                      attempt_fee: float | None = None) -> dict[str, Any]:  # fmt: skip
        return decide_retry(outcome, counters, self.rules, self.params, now_ms, attempt_fee)


@dataclass(frozen=True)
class FixedScheduleRetry:
    rules: NetworkRules
    name: str = fixed_schedule.POLICY_NAME

    def after_decline(self, outcome: dict[str, Any], counters: Counters, now_ms: int,
                      attempt_fee: float | None = None) -> dict[str, Any]:  # fmt: skip
        return fixed_schedule.fixed_schedule_retry(outcome, counters, self.rules, now_ms)


Factory = Callable[[NetworkRules, RetryParams], RetryPolicy]
POLICIES: dict[str, Factory] = {
    engine.POLICY_NAME: EngineRetry,
    fixed_schedule.POLICY_NAME: lambda rules, params: FixedScheduleRetry(rules),
}
if set(POLICIES) != set(NAMES):  # pragma: no cover - a policy added to one list only
    raise RuntimeError(f"RetryPolicyName {NAMES} and the registry {tuple(POLICIES)} differ")


def build(name: str, rules: NetworkRules, params: RetryParams) -> RetryPolicy:
    """The retry policy `name`; `params` are the engine's (margin, attempt cost, recovery)."""
    if name not in POLICIES:
        raise ValueError(f"unknown retry policy {name!r}: one of {NAMES}")
    return POLICIES[name](rules, params)
