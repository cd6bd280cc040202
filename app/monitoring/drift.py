"""Drift detectors over the signals authpilot watches: pure, no Kafka, a few microseconds each.

Every signal is a River Page-Hinkley test (`drift.PageHinkley`, alpha=1: the classic CUSUM).
Its `delta` is the smallest sustained shift of the signal's mean worth an alarm and
`threshold` the evidence needed, in the signal's own units: the expected detection delay for a
shift d > delta is about threshold / (d - delta) samples. Why not the others:

* ADWIN (river 0.26: Rust core, `clock=32` checks every 32 updates, `grace_period=10`) flags
  any statistically significant change. Real traffic has real cycles, and over 1M steady
  attempts of the simulator it alarmed 4-6 times per route on approval (night hours are
  -0.3 logit, the payday cycle moves insufficient funds 4x) and 22 times on the mean score.
  Page-Hinkley's delta is that tolerance. (Routes are not judged here: a drift test needs
  ~100 samples of baseline and tens more to move; route health counts attempts instead.)
* River's default PageHinkley alpha=0.9999 fades the cumulative sums but not their running
  min/max, so the statistic wanders by ~20x the noise and alarmed 4-35 times per 1M steady
  samples on every signal; alpha=1 alarmed zero times.
* KSWIN runs a KS test per update (hundreds of microseconds) at alpha per test: thousands of
  false alarms on a million events unless sampled; the mean-shift tests here are enough.

Defaults were tuned on simulated traffic (python -m app.bench.drift_replay): across 3 seeds x
1M steady attempts the largest statistic reached was about a third to a half of each
threshold (score 10.7 of 30, calibration 23.6 of 50, ln amount 42 of 100, cross-border 23 of
60, SCA 29 of 60).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from river.drift import PageHinkley

Mode = Literal["up", "down", "both"]
Direction = Literal["up", "down"]


@dataclass(frozen=True)
class PHSpec:
    """Page-Hinkley settings of one signal; `recent` is the span of the reported recent level."""

    delta: float
    threshold: float
    mode: Mode = "both"
    min_instances: int = 100
    recent: int = 50

    def build(self) -> PageHinkley:
        return PageHinkley(
            min_instances=self.min_instances,
            delta=self.delta,
            threshold=self.threshold,
            alpha=1.0,
            mode=self.mode,
        )

    @property
    def label(self) -> str:
        return f"PageHinkley({self.mode},delta={self.delta:g},threshold={self.threshold:g})"


@dataclass(frozen=True)
class Alarm:
    """One detection: which signal moved, which way, from what baseline to what recent level."""

    signal: str  # score, calibration, amount, cross_border, sca_required
    subject: str  # model or feature name
    detector: str  # "<signal>:<PHSpec.label>"
    direction: Direction
    value: float  # recent level (EWMA over about PHSpec.recent samples)
    baseline: float  # mean since the detector's last reset (the excursion included)
    samples: int  # samples since the last reset


class Signal:
    """One monitored stream: a Page-Hinkley test plus its baseline mean and a recent EWMA.

    After an alarm the detector starts afresh (a new baseline is learnt from the new level), so
    a persistent shift alarms once, not on every later sample.
    """

    __slots__ = ("_det", "_w", "detector", "mean", "n", "name", "recent", "spec", "subject")

    def __init__(self, name: str, subject: str, spec: PHSpec) -> None:
        self.name = name
        self.subject = subject
        self.spec = spec
        self.detector = f"{name}:{spec.label}"
        self._w = 2.0 / (spec.recent + 1)
        self.reset()

    def reset(self) -> None:
        self._det = self.spec.build()
        self.n = 0
        self.mean = 0.0
        self.recent = 0.0

    def update(self, x: float) -> Alarm | None:
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.recent = x if self.n == 1 else self.recent + self._w * (x - self.recent)
        det = self._det
        det.update(x)
        if not det.drift_detected:
            return None
        alarm = Alarm(
            self.name,
            self.subject,
            self.detector,
            "up" if self.recent > self.mean else "down",
            self.recent,
            self.mean,
            self.n,
        )
        self.reset()
        return alarm


@dataclass(frozen=True)
class DriftConfig:
    """Detector settings per signal. Units: shares are 0/1 indicators,
    score and calibration are probabilities, amount is ln(amount_minor)."""

    # Mean p_approve of the chosen route; a surge legitimately moves it (statistic 53).
    score: PHSpec = PHSpec(0.05, 30.0, "both", min_instances=1000, recent=500)
    # Residual y - p (0 when calibrated): a 0.1 bias is caught in ~700 outcomes.
    calibration: PHSpec = PHSpec(0.03, 50.0, "both", min_instances=1000, recent=500)
    amount: PHSpec = PHSpec(0.25, 100.0, "both", min_instances=1000, recent=500)
    cross_border: PHSpec = PHSpec(0.05, 60.0, "both", min_instances=1000, recent=500)
    sca_required: PHSpec = PHSpec(0.05, 60.0, "both", min_instances=1000, recent=500)


@dataclass
class DriftMonitor:
    """All detectors of one worker: model score and calibration, request features (routes
    are judged in attempts by app.monitoring.route_health, not by a drift test).

    Pure and single-threaded; the caller decides which samples each detector sees (the health
    layer stops feeding a model in fallback and resets it on recovery).
    """

    config: DriftConfig = field(default_factory=DriftConfig)
    model: str = "model"

    def __post_init__(self) -> None:
        c = self.config
        self.score = Signal("score", self.model, c.score)
        self.calibration = Signal("calibration", self.model, c.calibration)
        self.amount = Signal("amount", "amount_minor", c.amount)
        self.cross_border = Signal("cross_border", "cross_border", c.cross_border)
        self.sca_required = Signal("sca_required", "sca_required", c.sca_required)

    def update_score(self, p: float) -> Alarm | None:
        return self.score.update(p)

    def update_calibration(self, p: float, approved: bool) -> Alarm | None:
        """Signed residual y - p: mean 0 for a calibrated model whatever the traffic mix."""
        return self.calibration.update((1.0 if approved else 0.0) - p)

    def update_features(
        self, amount_minor: float, cross_border: bool, sca_required: bool
    ) -> list[Alarm]:
        """Request features; amounts are lognormal, so the test runs on ln(amount)."""
        out = []
        for sig, x in (
            (self.amount, math.log(max(amount_minor, 1.0))),
            (self.cross_border, 1.0 if cross_border else 0.0),
            (self.sca_required, 1.0 if sca_required else 0.0),
        ):
            a = sig.update(x)
            if a is not None:
                out.append(a)
        return out

    def reset_model(self) -> None:
        self.score.reset()
        self.calibration.reset()
