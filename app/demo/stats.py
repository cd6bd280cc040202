"""What the demo shows, accumulated from the closed loop's decisions and outcomes: per arm
approval and value per payment with 95% intervals and uplift over the holdout, route shares,
throughput and produce->decision latency over the last 10 s, alerts, shadow agreement, the
same per phase of the story (quiet, outage on, outage over, shift on: an incident's effect is
invisible in totals over the whole run), the share of a watched segment (an issuer shift's
country) on the route it moved to, and time series per simulated hour for the report. Pure
bookkeeping under one lock (the loadgen's consumer thread and the side consumer write, the
view reads)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
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
    watched: int = 0  # first attempts of the watched segment (an issuer shift's country)
    watched_on_route: int = 0  # ... sent to the route the shift favours

    def approval(self) -> Interval:
        return wilson_ci(self.approved, self.payments)

    def watched_share(self) -> Interval:
        return wilson_ci(self.watched_on_route, self.watched)

    def value_per_payment(self) -> Interval:
        n = self.payments
        if n < 2:
            return Interval(math.nan, math.nan, math.nan)
        m = self.value / n
        sd = math.sqrt(max(self.value_sq / n - m * m, 0.0) * n / (n - 1))
        return Interval(m, m - Z95 * sd / math.sqrt(n), m + Z95 * sd / math.sqrt(n))


class DemoStats:
    def __init__(self, margin_bps: float, holdout: str, clock: Any = time.monotonic,
                 phase_of: Callable[[int], str] | None = None,
                 watch: tuple[str, str] | None = None) -> None:  # fmt: skip
        """`phase_of`: event time (ms) -> the story's phase; `watch`: (issuer country, route)
        whose share of that country's first attempts is counted."""
        self.margin = margin_bps / 10_000.0
        self.holdout = holdout
        self._clock = clock
        self.phase_of = phase_of or (lambda t: "all")
        self.watch = watch
        self.phases: dict[str, dict[str, ArmTotals]] = {}  # phase -> arm -> totals, in order
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
            t = out["event_time"]
            w = self.watch
            watched = w is not None and out.get("issuer_country") == w[0]
            on_route = watched and w is not None and d["chosen_route"] == w[1]
            for totals in (self.arms.setdefault(arm, ArmTotals()),
                           self.hours.setdefault(t // HOUR_MS, {}).setdefault(arm, ArmTotals()),
                           self.phases.setdefault(self.phase_of(t), {})
                           .setdefault(arm, ArmTotals())):  # fmt: skip
                totals.payments += 1
                totals.approved += bool(out["approved"])
                totals.value += v
                totals.value_sq += v * v
                totals.routes[d["chosen_route"]] += 1
                totals.watched += watched
                totals.watched_on_route += on_route

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

    def uplift(self, arm: str, phase: str | None = None) -> Interval:
        """Approval uplift of `arm` over the holdout, pp (independent samples, normal), over
        the whole run or one phase."""
        with self._lock:
            arms = self.arms if phase is None else self.phases.get(phase, {})
            a, h = arms.get(arm), arms.get(self.holdout)
        if a is None or h is None or a.payments < 2 or h.payments < 2:
            return Interval(math.nan, math.nan, math.nan)
        pa, ph = a.approved / a.payments, h.approved / h.payments
        se = math.sqrt(pa * (1 - pa) / a.payments + ph * (1 - ph) / h.payments)
        d = (pa - ph) * 100
        return Interval(d, d - Z95 * se * 100, d + Z95 * se * 100)

    def snapshot(self) -> dict[str, ArmTotals]:
        with self._lock:
            return _copy(self.arms)

    def phase_snapshot(self) -> list[tuple[str, dict[str, ArmTotals]]]:
        """Per phase in the order the story reached them: arm -> totals."""
        with self._lock:
            return [(k, _copy(v)) for k, v in self.phases.items()]


def _copy(arms: dict[str, ArmTotals]) -> dict[str, ArmTotals]:
    return {k: ArmTotals(v.payments, v.approved, v.value, v.value_sq, Counter(v.routes),
                         v.watched, v.watched_on_route) for k, v in arms.items()}  # fmt: skip


def phases_in(events: Sequence[tuple[str, int, int | None]]) -> Callable[[int], str]:
    """Event time (ms) -> the phase of a story of (label, start ms, end ms or None) events:
    'quiet' before the first, else the latest one started, 'on' or 'over'."""
    ordered = sorted(events, key=lambda e: e[1])

    def phase(t_ms: int) -> str:
        for label, t0, t1 in reversed(ordered):
            if t_ms >= t0:
                return f"{label} {'over' if t1 is not None and t_ms >= t1 else 'on'}"
        return "quiet"

    return phase
