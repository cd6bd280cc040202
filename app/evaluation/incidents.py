"""The scenario's events as incidents an evaluation is measured around: the evaluated window,
the phases of each incident and the payments it touches (its segment).

Without events the evaluation keeps its default split (history = the first 75% of the
scenario, evaluation = the rest). With events, a 75% split would put every preset's incident
(outage on day 10.25, BIN launch on day 12, issuer shift on day 14 of 28) in the history, where
no policy is ever evaluated on it: the history ends half a day before the first event instead,
and the evaluated window runs until a day after the last one is over, so each incident has a
before, a during and an after.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.sim.world import BinLaunch, Event, IssuerShift, RouteOutage, Surge, World, build_world

HISTORY_GAP_DAYS = 0.5  # "before" phase: the history stops this long before the first event
AFTER_DAYS = 1.0  # evaluated until this long after the last event is over
ADAPTING_MS = HOUR_MS  # an issuer shift's first hour: the router is allowed to be adapting
DEFAULT_HISTORY_SHARE = 0.75  # event-less scenarios: history = the first 75%


@dataclass(frozen=True)
class Phase:
    name: str
    start_ms: int
    end_ms: int  # exclusive


@dataclass(frozen=True)
class Incident:
    """One event of the scenario, with its phases inside the evaluated window."""

    index: int  # position in world.events
    kind: str  # route_outage / issuer_shift / bin_launch / surge
    name: str  # what the report calls it, e.g. "route_outage acq-de"
    start_ms: int
    end_ms: int | None  # None: the change does not end within the horizon
    phases: tuple[Phase, ...]
    route_id: str | None = None  # the collapsed route of an outage

    def phase_of(self, t_ms: np.ndarray) -> np.ndarray:
        """Phase index of each time; -1 outside every phase."""
        out = np.full(len(t_ms), -1, np.int64)
        for k, p in enumerate(self.phases):
            out[(t_ms >= p.start_ms) & (t_ms < p.end_ms)] = k
        return out


def _kind(e: Event) -> str:
    return {RouteOutage: "route_outage", IssuerShift: "issuer_shift", BinLaunch: "bin_launch",
            Surge: "surge"}[type(e)]  # fmt: skip


def event_end_day(e: Event) -> float | None:
    """When an event is over: its end, or for a change that does not end, when it is complete
    (an issuer shift's ramp, a BIN launch's start); None = never (for the window: the start)."""
    if isinstance(e, RouteOutage | Surge):
        return e.end_day
    if isinstance(e, IssuerShift):
        return e.end_day if math.isfinite(e.end_day) else None
    return None


def _settled_day(e: Event) -> float:
    end = event_end_day(e)
    if end is not None:
        return end
    return e.start_day + (e.ramp_days if isinstance(e, IssuerShift) else 0.0)


def windows(world: World, history_days: float | None = None,
            eval_days: float | None = None) -> tuple[float, float]:  # fmt: skip
    """(history days, evaluated days). A value the user gave is kept; with both missing and
    events in the scenario, the window is built around the events (module docstring)."""
    if history_days is None and eval_days is None and world.events:
        first = min(e.start_day for e in world.events)
        hist = first - HISTORY_GAP_DAYS
        if hist <= 0:
            raise ValueError(f"the first event starts on day {first:g}: too early for a "
                             f"history before it; give --history-days and --eval-days")  # fmt: skip
        last = max(_settled_day(e) for e in world.events) + AFTER_DAYS
        return hist, round(min(last, world.days) - hist, 4)
    hist = history_days if history_days is not None else round(world.days * DEFAULT_HISTORY_SHARE,
                                                                 2)  # fmt: skip
    return hist, eval_days if eval_days is not None else world.days - hist


def incidents(world: World, start_day: float, end_day: float) -> list[Incident]:
    """The events that start inside the evaluated window [start_day, end_day), with phases:
    route_outage and surge before / during / after; issuer_shift before / adapting (its first
    hour) / after (and ended, when it ends in the window); bin_launch before / after. Phases are
    clipped to the window and dropped when empty."""
    w0 = world.start_ms + int(start_day * DAY_MS)
    w1 = world.start_ms + int(end_day * DAY_MS)
    out = []
    for k, e in enumerate(world.events):
        if not start_day <= e.start_day < end_day:
            continue
        s = world.start_ms + int(e.start_day * DAY_MS)
        end = event_end_day(e)
        t_end = None if end is None else world.start_ms + int(end * DAY_MS)
        kind = _kind(e)
        cuts: list[tuple[str, int]] = [("before", w0)]
        if isinstance(e, RouteOutage | Surge):
            cuts += [("during", s), ("after", t_end or w1)]
        elif isinstance(e, IssuerShift):
            cuts += [("adapting", s), ("after", s + ADAPTING_MS)]
            if t_end is not None:
                cuts.append(("ended", t_end))
        else:
            cuts.append(("after", s))
        bounds = [t for _, t in cuts[1:]] + [w1]
        phases = tuple(Phase(n, max(a, w0), min(b, w1))
                       for (n, a), b in zip(cuts, bounds, strict=True)
                       if min(b, w1) > max(a, w0))  # fmt: skip
        route = e.route_id if isinstance(e, RouteOutage) else None
        out.append(Incident(k, kind, _name(e), s, t_end, phases, route))
    return out


def _name(e: Event) -> str:
    if isinstance(e, RouteOutage):
        return f"route_outage {e.route_id}"
    if isinstance(e, IssuerShift):
        who = e.issuer_id or f"{e.issuer_country} issuers"
        where = "" if e.route_id is None else f" on {e.route_id}"
        if e.route_id is not None and e.other_routes_logit:
            where += f" ({e.approval_logit:+g}; {e.other_routes_logit:+g} elsewhere)"
        else:
            where += f" ({e.approval_logit:+g})"
        return f"issuer_shift {who}{where}"
    if isinstance(e, BinLaunch):
        return f"bin_launch {e.issuer_id}"
    return f"surge day {e.start_day:g}-{e.end_day:g}"


def segment(world: World, inc: Incident, payments: Sequence[dict[str, Any]]) -> np.ndarray:
    """Per payment: is it in the incident's affected segment? route_outage: its candidates
    include the route; issuer_shift: its card's issuer is the shifted issuer or of the shifted
    country; bin_launch: its BIN is the launched issuer's; surge: every payment. Issuers come
    from the BIN through the world's ranges, as a router would see them."""
    e = world.events[inc.index]
    if isinstance(e, RouteOutage):
        return np.array([any(c["route_id"] == e.route_id for c in p["candidates"])
                         for p in payments], bool)  # fmt: skip
    if isinstance(e, Surge):
        return np.ones(len(payments), bool)
    bins = np.array([int(p["bin"][:6]) if p["bin"][:6].isdigit() else -1 for p in payments])
    issuer = world.issuer_of_bin(bins)
    if isinstance(e, IssuerShift):
        return world.event_issuers[inc.index][issuer]
    return issuer == world.issuer_idx[e.issuer_id]


def without_event(world: World, index: int) -> World:
    """The same world without one event: the counterfactual that says which payments the
    event moved (their oracle route differs)."""
    spec = dict(world.spec)
    spec["events"] = [e for k, e in enumerate(world.spec["events"]) if k != index]
    return build_world(spec)
