"""What the demo shows, accumulated from the closed loop's decisions and outcomes: per arm
approval and value per payment with 95% intervals and uplift over the holdout, route shares,
throughput and produce->decision latency over the last 10 s, alerts, shadow agreement, and
time series per simulated hour for the report. Pure bookkeeping under one lock (the loadgen's
consumer thread and the side consumer write, the view reads)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from app.experiments.stats import Z95, Interval, wilson_ci

WINDOW_S = 10.0  # the live latency and throughput window: recent, not since start
HOUR_MS = 3_600_000


@dataclass
class ArmTotals:
    payments: int = 0  # first attempts answered
    approved: int = 0
    value: float = 0.0  # sum of margin x amount on approvals - fees
    value_sq: float = 0.0
    routes: Counter[str] = field(default_factory=Counter)

    def approval(self) -> Interval:
        return wilson_ci(self.approved, self.payments)

    def value_per_payment(self) -> Interval:
        n = self.payments
        if n < 2:
            return Interval(math.nan, math.nan, math.nan)
        m = self.value / n
        sd = math.sqrt(max(self.value_sq / n - m * m, 0.0) * n / (n - 1))
        return Interval(m, m - Z95 * sd / math.sqrt(n), m + Z95 * sd / math.sqrt(n))


class DemoStats:
    def __init__(self, margin_bps: float, holdout: str, clock: Any = time.monotonic) -> None:
        self.margin = margin_bps / 10_000.0
        self.holdout = holdout
        self._clock = clock
        self._lock = threading.Lock()
        self.arms: dict[str, ArmTotals] = {}
        self.recent: deque[tuple[float, float]] = deque()  # (wall s, produce->decision us)
        self.alerts: list[dict[str, Any]] = []
        self.hours: dict[int, dict[str, ArmTotals]] = {}  # sim hour -> arm -> totals
        self.latency_series: list[tuple[int, float]] = []  # (sim ms, us), every 10th
        self._chosen: dict[str, str] = {}  # request_id -> champion's route, for the shadow
        self.shadow_seen = 0
        self.shadow_agree = 0
        self.decisions = 0
        self.model_scored = 0

    def outcome(self, d: dict[str, Any], out: dict[str, Any], latency_us: float) -> None:
        """One answered attempt (the loadgen's on_outcome)."""
        now = self._clock()
        fee = next((c["fee_minor"] for c in d.get("scores", []) if c["route_id"] ==
                    d["chosen_route"]), 0)  # fmt: skip
        arm = d.get("arm") or "default"
        with self._lock:
            self.decisions += 1
            self.model_scored += d.get("model_version") is not None
            self.recent.append((now, latency_us))
            while self.recent and now - self.recent[0][0] > WINDOW_S:
                self.recent.popleft()
            if self.decisions % 10 == 0:
                self.latency_series.append((out["event_time"], latency_us))
            if len(self._chosen) > 200_000:
                self._chosen.clear()
            self._chosen[d["request_id"]] = d["chosen_route"]
            if d.get("attempt", 1) != 1:
                return
            v = (out["amount_minor"] * self.margin if out["approved"] else 0.0) - fee
            for totals in (self.arms.setdefault(arm, ArmTotals()),
                           self.hours.setdefault(out["event_time"] // HOUR_MS, {})
                           .setdefault(arm, ArmTotals())):  # fmt: skip
                totals.payments += 1
                totals.approved += bool(out["approved"])
                totals.value += v
                totals.value_sq += v * v
                totals.routes[d["chosen_route"]] += 1

    def alert(self, a: dict[str, Any]) -> None:
        with self._lock:
            self.alerts.append(a)

    def shadow(self, d: dict[str, Any]) -> None:
        with self._lock:
            mine = self._chosen.get(d["request_id"])
            if mine is not None:
                self.shadow_seen += 1
                self.shadow_agree += mine == d["chosen_route"]

    def window(self) -> tuple[float, float, float]:
        """(decisions/s, p50 us, p99 us) over the last WINDOW_S seconds."""
        with self._lock:
            lat = sorted(x for _, x in self.recent)
            span = (self.recent[-1][0] - self.recent[0][0]) if len(self.recent) > 1 else 0.0
        if not lat:
            return 0.0, math.nan, math.nan
        rate = len(lat) / max(span, 1e-9) if span > 0 else 0.0
        return rate, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]

    def uplift(self, arm: str) -> Interval:
        """Approval uplift of `arm` over the holdout, pp (independent samples, normal)."""
        with self._lock:
            a, h = self.arms.get(arm), self.arms.get(self.holdout)
        if a is None or h is None or a.payments < 2 or h.payments < 2:
            return Interval(math.nan, math.nan, math.nan)
        pa, ph = a.approved / a.payments, h.approved / h.payments
        se = math.sqrt(pa * (1 - pa) / a.payments + ph * (1 - ph) / h.payments)
        d = (pa - ph) * 100
        return Interval(d, d - Z95 * se * 100, d + Z95 * se * 100)

    def snapshot(self) -> dict[str, ArmTotals]:
        with self._lock:
            return {k: ArmTotals(v.payments, v.approved, v.value, v.value_sq, Counter(v.routes))
                    for k, v in self.arms.items()}  # fmt: skip
