"""Model health: OK / FALLBACK of the serving model, driven by the calibration detector.

    OK --(calibration alarm)--> FALLBACK                     CALIBRATION_DRIFT, MODEL_FALLBACK
    FALLBACK --(cooldown elapsed and |mean(y - p)| <= tolerance
                over a window of `calibration_window` outcomes)--> OK     MODEL_RESTORED

In FALLBACK the agent routes by success rate but keeps scoring in shadow and passes the
model's p with each outcome so calibration can be seen to come back. Outcomes on demoted
routes never feed the model's checks: the route explains them, not the model.

Score alarms (SCORE_DRIFT: the chosen route's mean p moved) and feature alarms (FEATURE_DRIFT)
are informational and change no state. The chosen p moves whenever the routes do: in
`acquirer_outage` (evaluate-policy, seeds 1-3) the score alarm put the model into fallback in
every seed (no calibration alarm fired), success-rate routing then served the outage at
-0.99 points of first-attempt approval against the static router, and 10,000 payments were
not enough for the 4000-outcome restore window to bring it back. Whether the model still
decides well is what the calibration of the p it decides with says, so only that falls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.contracts.vocab import MINUTE_MS


class ModelState(StrEnum):
    OK = "OK"
    FALLBACK = "FALLBACK"


@dataclass(frozen=True)
class ModelHealthConfig:
    """Recovery rule of the model: cool-down in event time, then calibration back in range.

    The tolerance is half the calibration detector's delta (0.03), so a model restored while
    still biased by 0.02-0.03 (seen in replays with 0.03) cannot re-baseline the detector on
    the bias; 4000 outcomes put the mean residual's standard error near 0.005, so a calibrated
    model passes a window with ~3 standard errors to spare.
    """

    cooldown_ms: int = 30 * MINUTE_MS
    calibration_window: int = 4000
    calibration_tolerance: float = 0.015


class ModelHealth:
    """OK / FALLBACK of the serving model."""

    __slots__ = ("_n", "_sum", "cfg", "fallback_at", "last_residual", "state")

    def __init__(self, cfg: ModelHealthConfig) -> None:
        self.cfg = cfg
        self.state = ModelState.OK
        self.fallback_at: int | None = None
        self.last_residual: float | None = None
        self._n = 0
        self._sum = 0.0

    def fall_back(self, event_time: int) -> None:
        self.state = ModelState.FALLBACK
        self.fallback_at = event_time
        self._n = 0
        self._sum = 0.0

    def observe(self, residual: float, event_time: int) -> bool:
        """Count one shadow residual y - p in FALLBACK; True when the model is restored."""
        self._n += 1
        self._sum += residual
        if self._n < self.cfg.calibration_window:
            return False
        self.last_residual = self._sum / self._n
        self._n = 0
        self._sum = 0.0
        assert self.fallback_at is not None
        if (
            event_time - self.fallback_at >= self.cfg.cooldown_ms
            and abs(self.last_residual) <= self.cfg.calibration_tolerance
        ):
            self.state = ModelState.OK
            self.fallback_at = None
            return True
        return False
