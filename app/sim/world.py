"""The simulated payments world: entities and parameters, parsed and resolved into arrays.

`build_world(spec)` turns a resolved scenario spec (app.sim.scenarios.load_scenario) into a
`World`: frozen dataclasses for every entity and parameter group (so a typo in a config fails
loudly, naming the unknown key), plus dense numpy arrays indexed by route / issuer / merchant /
card / country that the vectorized ground truth (truth.py) and the traffic sampler (traffic.py)
read. Nothing in here draws traffic.

The world is a function of the scenario alone (its `world_seed`), never of the run seed: the
card population, BINs, hidden card states and the route x issuer affinity noise are the same
in every run of a scenario, so a model trained on seed 1 can be evaluated on seed 2 of the same
world, and p_approve means the same thing in the offline log and in the closed-loop generator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from app.contracts.vocab import CHANNELS, DAY_MS, FUNDING, NETWORKS

EXEMPTIONS = (None, "LOW_VALUE", "TRA", "MIT")
HARD_STATES = ("lost", "stolen", "expired", "invalid")
NO_MAC = "none"
UNKNOWN_COUNTRY = "ZZ"


# ---------------------------------------------------------------- entities and parameters
@dataclass(frozen=True)
class Route:
    """An acquirer/processor. Fees are charged per attempt; failures are the route's own."""

    route_id: str
    acquirer_country: str
    fee_fixed_minor: float
    fee_bps: float
    cross_border_fee_bps: float  # extra when acquirer country != issuer country
    latency_median_ms: float
    latency_sigma: float  # lognormal sigma of the round trip
    failure_rate: float  # technical failures (91/96, failure_side ROUTE) per attempt
    failure_latency_ms: float  # failures are mostly timeouts: slow
    quality_logit: float = 0.0  # route-wide approval effect (risk data quality, retries)


@dataclass(frozen=True)
class BinRange:
    """Inclusive range of 6-digit BINs of one issuer, all with one funding type."""

    lo: str
    hi: str
    funding: str
    weight: float = 1.0


@dataclass(frozen=True)
class Issuer:
    """An issuing bank: its BIN ranges, country, network and base approval."""

    issuer_id: str
    country: str
    network: str
    base_approval: float  # P(approve) of the generic issuer stage at neutral conditions
    card_share: float  # share of the card population
    bin_ranges: tuple[BinRange, ...]
    sca_decline_rate: float = 0.0  # P(soft decline 1A/65) when SCA applies without 3DS
    nsf_mult: float = 1.0  # multiplier on insufficient-funds risk of its cardholders


@dataclass(frozen=True)
class Merchant:
    """A card acceptor: category, country, amounts, channel and initiator mix, routes."""

    merchant_id: str
    mcc: str
    country: str
    currency: str
    weight: float  # share of payments
    amount_median_minor: float
    amount_sigma: float  # lognormal sigma of amounts
    domestic_share: float  # share of payments by cards issued in the merchant's country
    channels: Mapping[str, float]
    default_route: str
    mit_share: float = 0.0
    mit_recurring_share: float = 0.0  # of MIT payments, share that are recurring
    three_ds_share: float = 0.8  # P(3DS) when SCA applies
    three_ds_other_share: float = 0.05  # P(3DS) on other card-not-present CIT
    routes: tuple[str, ...] = ()  # candidate routes; empty = all routes


@dataclass(frozen=True)
class Acquiring:
    """Approval effects of where the acquirer sits relative to the issuer (logits)."""

    domestic_logit: float  # acquirer country == issuer country
    intra_region_logit: float  # same region (e.g. both EEA), not domestic
    cross_border_logit: float  # merchant country != issuer country (cross-border sale)


@dataclass(frozen=True)
class Approval:
    """Additive logits of the generic issuer decision."""

    funding_logit: Mapping[str, float]
    channel_logit: Mapping[str, float]
    mcc_logit: Mapping[str, float]
    amount_slope: float  # per unit of log(amount / merchant median amount)
    mit_logit: float
    recurring_logit: float
    three_ds_logit: float
    # Why a generic decline is not a coin flip a retry can re-toss: the issuer's view of a card
    # persists. card_sigma: a card's own N(0, sigma) logit for as long as the world runs (risk
    # profile, account standing). day_persistence: the share of (card, UTC day) pairs whose
    # issuer decisions that day share one draw (a temporary hold, a fraud rule that keeps
    # firing), so a retry the same day meets the same answer and one on a later day draws anew.
    card_sigma: float = 0.0
    day_persistence: float = 0.0


@dataclass(frozen=True)
class Funds:
    """Insufficient funds (51): a cardholder's money runs low towards payday, recovers after.

    P(51) = base_rate * issuer.nsf_mult * funding_mult * card_mult * payday * amount_term,
    payday = min_mult + (max_mult - min_mult) * phase**shape with phase the fraction of the way
    from the last payday to the next (0 right after payday, 1 just before the next one).
    """

    base_rate: float
    paydays: tuple[int, ...]  # days of month, 1..28
    min_mult: float
    max_mult: float
    shape: float
    amount_elasticity: float  # P(51) scales with (amount / merchant median) ** elasticity
    funding_mult: Mapping[str, float]
    card_sigma: float  # lognormal spread of a card's own NSF multiplier (mean 1)
    max_rate: float = 0.95
    # 1: a card short of funds stays short until its next payday (one draw per card per pay
    # cycle, compared with the rising 51 rate); 0: every attempt draws afresh.
    cycle_persistence: float = 0.0
    # pay calendars by the card's issuer country (days of month); `paydays` for the rest.
    # Salaries are monthly in most of Europe, semi-monthly or biweekly in North America.
    paydays_by_country: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Cards:
    """The card population: how many, how unequal their activity, hidden hard states."""

    count: int
    activity_sigma: float
    hard_states: Mapping[str, float]  # state (lost/stolen/expired/invalid) -> share of cards
    hard_decline_prob: float  # P(issuer declines with the state's code) per attempt


@dataclass(frozen=True)
class Sca:
    """PSD2: card-not-present CIT with both legs in these countries needs SCA or an exemption."""

    countries: tuple[str, ...]
    low_value_limit_minor: float
    low_value_exemption_share: float
    tra_exemption_share: float


@dataclass(frozen=True)
class Seasonality:
    """UTC hourly and weekday (Monday first) volume multipliers and approval logits."""

    hourly_volume: tuple[float, ...]
    weekday_volume: tuple[float, ...]
    hourly_logit: tuple[float, ...]
    weekday_logit: tuple[float, ...]


@dataclass(frozen=True)
class LoggingPolicy:
    """Merchant default route with probability 1-epsilon, else uniform over the candidates."""

    epsilon: float


@dataclass(frozen=True)
class RetryRule:
    """Fixed schedule of the logged history for one response code (or SCA)."""

    share: float  # P(the merchant retries at all after this decline)
    delays_h: tuple[float, ...]  # delay after attempt k is delays_h[k-1]
    step_up_three_ds: bool = False


@dataclass(frozen=True)
class Retries:
    max_attempts: int
    jitter: float  # delays are multiplied by U(1 - jitter, 1 + jitter)
    rules: Mapping[str, RetryRule]
    # share of retries whose delay is drawn uniformly from explore_delays_h instead of the rule's
    # (delay exploration: what lets a recovery model be fitted for delays the rules never use)
    explore: float = 0.0
    explore_delays_h: tuple[float, ...] = (0.5, 24.0, 72.0, 168.0)


# ---------------------------------------------------------------- events (time-varying truth)
@dataclass(frozen=True)
class RouteOutage:
    """A route degrades in [start_day, end_day): technical failures and worse approvals."""

    route_id: str
    start_day: float
    end_day: float
    failure_rate: (
        float  # P(route failure) during the window (replaces the route's own rate if higher)
    )
    approval_logit: float = 0.0
    latency_mult: float = 1.0


@dataclass(frozen=True)
class IssuerShift:
    """Issuers' approval moves by approval_logit from start_day (linearly over ramp_days).

    Who: one issuer (`issuer_id`) or every issuer of a country (`issuer_country`), exactly one
    of the two. Where: every route, or only `route_id`, with `other_routes_logit` on every
    other route at the same time (a country's issuers that gain on one acquirer and lose on the
    rest: one event, so both sides start and ramp together)."""

    start_day: float
    approval_logit: float
    issuer_id: str | None = None
    issuer_country: str | None = None
    end_day: float = math.inf
    route_id: str | None = None  # only on this route; None = every route
    other_routes_logit: float = 0.0  # with route_id: the shift on every other route
    ramp_days: float = 0.0


@dataclass(frozen=True)
class BinLaunch:
    """An issuer's cards do not transact before start_day (cold start for its BINs)."""

    issuer_id: str
    start_day: float


@dataclass(frozen=True)
class Surge:
    """A holiday window: more volume, larger amounts, stricter issuers, more NSF, busier routes."""

    start_day: float
    end_day: float
    volume_mult: float = 1.0
    amount_mult: float = 1.0
    approval_logit: float = 0.0
    nsf_mult: float = 1.0
    route_failure_mult: float = 1.0


Event = RouteOutage | IssuerShift | BinLaunch | Surge
EVENT_TYPES: dict[str, type] = {
    "route_outage": RouteOutage,
    "issuer_shift": IssuerShift,
    "bin_launch": BinLaunch,
    "surge": Surge,
}


def _make(cls: type, d: Mapping[str, Any], where: str, **extra: Any) -> Any:
    """Build a frozen parameter dataclass, refusing unknown keys (typos must not pass silently)."""
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in d.items() if not k.startswith("_")}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(names)})")
    kw = {**data, **extra}
    for f in dataclasses.fields(cls):
        if f.name in kw and isinstance(kw[f.name], list):
            kw[f.name] = tuple(kw[f.name])
    try:
        return cls(**kw)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def _parse_start(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


# ---------------------------------------------------------------- the world
class World:
    """Parameters plus the dense arrays the vectorized truth reads.

    Every per-entity array has one extra sentinel row at the end ("unknown" issuer/card/
    country) so requests from outside the world (a BIN the world never issued, a foreign card
    fingerprint) get neutral values without branches in the hot path.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.name: str = spec.get("name", "custom")
        self.world_seed = int(spec["world_seed"])
        self.start_ms = _parse_start(spec["start"])
        self.days = float(spec["days"])
        self.end_ms = self.start_ms + int(self.days * DAY_MS)

        self.routes: tuple[Route, ...] = tuple(
            _make(Route, d, f"routes.{k}", route_id=k) for k, d in spec["routes"].items()
        )
        self.issuers: tuple[Issuer, ...] = tuple(
            _make(
                Issuer,
                {**d, "bin_ranges": ()},
                f"issuers.{k}",
                issuer_id=k,
                bin_ranges=tuple(
                    _make(BinRange, b, f"issuers.{k}.bin_ranges") for b in d["bin_ranges"]
                ),
            )
            for k, d in spec["issuers"].items()
        )
        self.merchants: tuple[Merchant, ...] = tuple(
            _make(Merchant, d, f"merchants.{k}", merchant_id=k)
            for k, d in spec["merchants"].items()
        )
        self.acquiring: Acquiring = _make(Acquiring, spec["acquiring"], "acquiring")
        self.approval: Approval = _make(Approval, spec["approval"], "approval")
        self.funds: Funds = _make(Funds, spec["funds"], "funds")
        self.cards: Cards = _make(Cards, spec["cards"], "cards")
        self.sca: Sca = _make(Sca, spec["sca"], "sca")
        self.seasonality: Seasonality = _make(Seasonality, spec["seasonality"], "seasonality")
        self.logging_policy: LoggingPolicy = _make(
            LoggingPolicy, spec["logging_policy"], "logging_policy"
        )
        rt = spec["retries"]
        self.retries = Retries(
            max_attempts=int(rt["max_attempts"]),
            jitter=float(rt["jitter"]),
            rules={k: _make(RetryRule, v, f"retries.rules.{k}") for k, v in rt["rules"].items()},
            explore=float(rt.get("explore", 0.0)),
            explore_delays_h=tuple(float(h) for h in rt.get("explore_delays_h",
                                                              Retries.explore_delays_h)),
        )  # fmt: skip
        self.events: tuple[Event, ...] = tuple(
            self._event(i, e) for i, e in enumerate(spec["events"])
        )
        self._validate()
        self._index()
        self._codes(spec["codes"])
        self._affinity(spec.get("affinity", {}))
        self._cards()
        self._fp_index: dict[str, int] | None = None

    # -- parsing helpers
    def _event(self, i: int, e: Mapping[str, Any]) -> Event:
        kind = e.get("type")
        if kind not in EVENT_TYPES:
            raise ValueError(
                f"events[{i}]: type must be one of {sorted(EVENT_TYPES)}, not {kind!r}"
            )
        return _make(EVENT_TYPES[kind], {k: v for k, v in e.items() if k != "type"}, f"events[{i}]")

    def _validate(self) -> None:
        rids = {r.route_id for r in self.routes}
        iids = {i.issuer_id for i in self.issuers}
        for m in self.merchants:
            bad = [r for r in (*m.routes, m.default_route) if r not in rids]
            if bad:
                raise ValueError(f"merchants.{m.merchant_id}: unknown routes {bad}")
            if m.routes and m.default_route not in m.routes:
                raise ValueError(f"merchants.{m.merchant_id}: default_route not in routes")
            bad = [c for c in m.channels if c not in CHANNELS]
            if bad:
                raise ValueError(f"merchants.{m.merchant_id}: unknown channels {bad}")
        for i in self.issuers:
            if i.network not in NETWORKS:
                raise ValueError(f"issuers.{i.issuer_id}: network must be one of {NETWORKS}")
            for b in i.bin_ranges:
                if b.funding not in FUNDING or len(b.lo) != 6 or len(b.hi) != 6 or b.lo > b.hi:
                    raise ValueError(f"issuers.{i.issuer_id}: bad BIN range {b}")
        for e in self.events:
            route_id = e.route_id if isinstance(e, RouteOutage | IssuerShift) else None
            if route_id is not None and route_id not in rids:
                raise ValueError(f"event {e}: unknown route")
            if isinstance(e, BinLaunch) and e.issuer_id not in iids:
                raise ValueError(f"event {e}: unknown issuer")
            if isinstance(e, IssuerShift):
                if (e.issuer_id is None) == (e.issuer_country is None):
                    raise ValueError(f"event {e}: give exactly one of issuer_id, issuer_country")
                if e.issuer_id is not None and e.issuer_id not in iids:
                    raise ValueError(f"event {e}: unknown issuer")
                if e.issuer_country is not None and not any(
                    i.country == e.issuer_country for i in self.issuers
                ):
                    raise ValueError(f"event {e}: no issuer in country {e.issuer_country}")
                if e.other_routes_logit and e.route_id is None:
                    raise ValueError(f"event {e}: other_routes_logit needs a route_id")
        s = self.seasonality
        if (len(s.hourly_volume), len(s.hourly_logit)) != (24, 24) or (
            len(s.weekday_volume),
            len(s.weekday_logit),
        ) != (7, 7):
            raise ValueError("seasonality: hourly lists need 24 values, weekday lists 7")
        for where, days in [("paydays", self.funds.paydays),
                            *((f"paydays_by_country.{c}", d)
                              for c, d in self.funds.paydays_by_country.items())]:  # fmt: skip
            if not days or any(not 1 <= d <= 28 for d in days):
                raise ValueError(f"funds.{where} must be days of month 1..28")
        unknown = set(self.cards.hard_states) - set(HARD_STATES)
        if unknown:
            raise ValueError(f"cards.hard_states: unknown states {sorted(unknown)}")

    def _index(self) -> None:
        self.route_ids = [r.route_id for r in self.routes]
        self.issuer_ids = [i.issuer_id for i in self.issuers]
        self.merchant_ids = [m.merchant_id for m in self.merchants]
        self.route_idx = {k: n for n, k in enumerate(self.route_ids)}
        self.issuer_idx = {k: n for n, k in enumerate(self.issuer_ids)}
        self.merchant_idx = {k: n for n, k in enumerate(self.merchant_ids)}
        regions: Mapping[str, str] = self.spec.get("regions", {})
        countries = sorted(
            {r.acquirer_country for r in self.routes}
            | {i.country for i in self.issuers}
            | {m.country for m in self.merchants}
            | set(regions)
            | set(self.sca.countries)
        )
        self.countries = [*countries, UNKNOWN_COUNTRY]  # sentinel last
        self.country_idx = {c: n for n, c in enumerate(self.countries)}
        self.unknown_country = len(self.countries) - 1
        region_names = sorted(set(regions.values()))
        self.country_region = np.array(
            [region_names.index(regions[c]) if c in regions else -1 - n
             for n, c in enumerate(self.countries)], dtype=np.int32)  # fmt: skip
        self.country_sca = np.array([c in self.sca.countries for c in self.countries])

        R, nI = len(self.routes), len(self.issuers)
        self.route_country = np.array([self.country_idx[r.acquirer_country] for r in self.routes])
        self.route_fee_fixed = np.array([r.fee_fixed_minor for r in self.routes], float)
        self.route_fee_bps = np.array([r.fee_bps for r in self.routes], float)
        self.route_xb_bps = np.array([r.cross_border_fee_bps for r in self.routes], float)
        self.route_lat_median = np.array([r.latency_median_ms for r in self.routes], float)
        self.route_lat_sigma = np.array([r.latency_sigma for r in self.routes], float)
        self.route_failure = np.array([r.failure_rate for r in self.routes], float)
        self.route_fail_latency = np.array([r.failure_latency_ms for r in self.routes], float)
        self.route_quality = np.array([r.quality_logit for r in self.routes], float)

        # issuers + unknown sentinel (mean logit, neutral everything)
        logits = np.array([_logit(i.base_approval) for i in self.issuers], float)
        self.issuer_logit = np.append(logits, logits.mean())
        self.issuer_country = np.array(
            [self.country_idx[i.country] for i in self.issuers] + [self.unknown_country]
        )
        self.issuer_network = np.array(
            [NETWORKS.index(i.network) for i in self.issuers] + [NETWORKS.index("OTHER")]
        )
        sca = np.array([i.sca_decline_rate for i in self.issuers], float)
        self.issuer_sca_rate = np.append(sca, sca.mean())
        self.issuer_nsf = np.array([i.nsf_mult for i in self.issuers] + [1.0], float)
        self.unknown_issuer = nI
        ranges = sorted(
            (int(b.lo), int(b.hi), n) for n, i in enumerate(self.issuers) for b in i.bin_ranges
        )
        self._bin_lo = np.array([r[0] for r in ranges], np.int64)
        self._bin_hi = np.array([r[1] for r in ranges], np.int64)
        self._bin_issuer = np.array([r[2] for r in ranges], np.int64)

        a = self.approval
        self.funding_logit = np.array([a.funding_logit.get(f, 0.0) for f in FUNDING], float)
        self.channel_logit = np.array([a.channel_logit.get(c, 0.0) for c in CHANNELS], float)
        self.funding_nsf = np.array([self.funds.funding_mult.get(f, 1.0) for f in FUNDING], float)
        # pay calendar per country index (calendars[0] is the default `paydays`)
        by_country = {c: tuple(sorted(d)) for c, d in self.funds.paydays_by_country.items()}
        if set(by_country) - set(self.countries):
            raise ValueError(f"funds.paydays_by_country: unknown countries "
                             f"{sorted(set(by_country) - set(self.countries))}")  # fmt: skip
        self.calendars: list[tuple[int, ...]] = [tuple(sorted(self.funds.paydays))]
        for days in by_country.values():
            if days not in self.calendars:
                self.calendars.append(days)
        self.country_calendar = np.array(
            [self.calendars.index(by_country.get(c, self.calendars[0])) for c in self.countries],
            np.int64,
        )
        s = self.seasonality
        self.hourly_logit = np.array(s.hourly_logit, float)
        self.weekday_logit = np.array(s.weekday_logit, float)

        # merchants: candidates as a padded matrix (route index, -1 = none)
        M = len(self.merchants)
        self.merchant_country = np.array([self.country_idx[m.country] for m in self.merchants])
        self.merchant_amount_median = np.array([m.amount_median_minor for m in self.merchants])
        self.merchant_mcc_logit = np.array([a.mcc_logit.get(m.mcc, 0.0) for m in self.merchants])
        self.merchant_cand = np.full((M, R), -1, np.int64)
        self.merchant_ncand = np.zeros(M, np.int64)
        self.merchant_default = np.zeros(M, np.int64)
        for n, m in enumerate(self.merchants):
            rs = [self.route_idx[r] for r in (m.routes or self.route_ids)]
            self.merchant_cand[n, : len(rs)] = rs
            self.merchant_ncand[n] = len(rs)
            self.merchant_default[n] = self.route_idx[m.default_route]
        self.merchant_cand_mask = np.zeros((M, R), bool)
        for n in range(M):
            self.merchant_cand_mask[n, self.merchant_cand[n, : self.merchant_ncand[n]]] = True
        # per event: which issuers (+ the unknown sentinel, never) an issuer shift moves
        self.event_issuers: dict[int, np.ndarray] = {}
        for k, e in enumerate(self.events):
            if isinstance(e, IssuerShift):
                self.event_issuers[k] = np.array(
                    [e.issuer_id == i.issuer_id or e.issuer_country == i.country
                     for i in self.issuers] + [False])  # fmt: skip

    def _codes(self, codes: Mapping[str, Any]) -> None:
        """Response-code tables as cumulative arrays over one global code list."""

        def mix(d: Mapping[str, float]) -> dict[str, float]:
            return {k: float(v) for k, v in d.items() if not k.startswith("_")}

        dec = {k: mix(v) for k, v in codes["issuer_decline_mix"].items() if not k.startswith("_")}
        rf = mix(codes["route_failure_mix"])
        sca = {k: v for k, v in codes["sca_code"].items() if not k.startswith("_")}
        hard = {k: v for k, v in codes["hard_state_codes"].items() if not k.startswith("_")}
        adv = {k: mix(v) for k, v in codes["advice_mix"].items() if not k.startswith("_")}
        self.nsf_code_str: str = codes["nsf_code"]
        all_codes = {"00", self.nsf_code_str, *rf, *sca.values(), *hard.values()}
        for d in dec.values():
            all_codes |= set(d)
        self.codes = ["00", *sorted(all_codes - {"00"})]
        self.code_idx = {c: n for n, c in enumerate(self.codes)}
        C = len(self.codes)

        def cum(d: Mapping[str, float]) -> np.ndarray:
            w = np.zeros(C)
            for k, v in d.items():
                w[self.code_idx[k]] = v
            c = np.cumsum(w / w.sum())
            c[-1] = 1.0
            return c

        fallback = dec.get("OTHER") or next(iter(dec.values()))
        self.decline_cum = np.stack([cum(dec.get(n, fallback)) for n in NETWORKS])
        self.route_fail_cum = cum(rf)
        self.sca_code = np.array(
            [self.code_idx[sca.get(n, sca.get("OTHER", "1A"))] for n in NETWORKS], np.int64
        )
        self.nsf_code = self.code_idx[self.nsf_code_str]
        self.hard_state_code = {s: self.code_idx[c] for s, c in hard.items()}
        macs = {k for d in adv.values() for k in d} - {NO_MAC}
        self.macs = [NO_MAC, *sorted(macs)]
        mac_idx = {m: n for n, m in enumerate(self.macs)}
        default = adv.get("default", {NO_MAC: 1.0})
        self.mac_cum = np.zeros((C, len(self.macs)))
        for c, n in self.code_idx.items():
            w = np.zeros(len(self.macs))
            for k, v in adv.get(c, default).items():
                w[mac_idx[k]] = v
            self.mac_cum[n] = np.cumsum(w / w.sum())
            self.mac_cum[n, -1] = 1.0
        # which codes are the SCA soft decline on which network (keyed on (network, code))
        self.is_sca = np.zeros((len(NETWORKS), C), bool)
        for n, c in enumerate(self.sca_code):
            self.is_sca[n, c] = True

    def _affinity(self, aff: Mapping[str, Any]) -> None:
        R, nI = len(self.routes), len(self.issuers)
        rng = np.random.default_rng([self.world_seed, 1])
        noise = rng.normal(0.0, float(aff.get("noise_sigma", 0.0)), (R, nI))
        for r, row in aff.get("logit", {}).items():
            if r.startswith("_"):
                continue
            for i, v in row.items():
                if r not in self.route_idx or i not in self.issuer_idx:
                    raise ValueError(f"affinity.logit.{r}.{i}: unknown route or issuer")
                noise[self.route_idx[r], self.issuer_idx[i]] += float(v)
        self.affinity = np.concatenate([noise, np.zeros((R, 1))], axis=1)  # + unknown issuer

    def _cards(self) -> None:
        """The card population, seeded by world_seed only; one sentinel row at the end."""
        c = self.cards
        n = int(c.count)
        rng = np.random.default_rng([self.world_seed, 2])
        share = np.array([i.card_share for i in self.issuers], float)
        issuer = rng.choice(len(self.issuers), size=n, p=share / share.sum())
        bins = np.zeros(n, np.int64)
        funding = np.zeros(n, np.int64)
        for k, iss in enumerate(self.issuers):
            rows = np.flatnonzero(issuer == k)
            w = np.array([b.weight for b in iss.bin_ranges], float)
            which = rng.choice(len(iss.bin_ranges), size=len(rows), p=w / w.sum())
            lo = np.array([int(b.lo) for b in iss.bin_ranges])[which]
            hi = np.array([int(b.hi) for b in iss.bin_ranges])[which]
            bins[rows] = lo + np.floor(rng.random(len(rows)) * (hi - lo + 1)).astype(np.int64)
            funding[rows] = np.array([FUNDING.index(b.funding) for b in iss.bin_ranges])[which]
        activity = rng.lognormal(0.0, c.activity_sigma, n)
        s = self.funds.card_sigma
        nsf = rng.lognormal(-(s**2) / 2, s, n)  # mean 1
        states = [k for k in HARD_STATES if c.hard_states.get(k, 0) > 0]
        p = np.array([c.hard_states[k] for k in states], float)
        u = rng.random(n)
        hard = np.full(n, -1, np.int64)
        edges = np.cumsum(p)
        which = np.searchsorted(edges, u, side="right")
        for j, st in enumerate(states):
            hard[which == j] = self.hard_state_code[st]
        self.n_cards = n
        self.card_issuer = np.append(issuer, self.unknown_issuer)
        self.card_bin = np.append(bins, 0)
        self.card_funding = np.append(funding, FUNDING.index("UNKNOWN"))
        self.card_activity = np.append(activity, 0.0)
        self.card_nsf = np.append(nsf, 1.0)
        self.card_hard = np.append(hard, -1)
        # drawn last so adding it left every earlier draw of existing worlds unchanged
        self.card_logit = np.append(rng.normal(0.0, self.approval.card_sigma, n), 0.0)
        self.bin_labels = [f"{b:06d}" for b in bins]
        self.card_fingerprint = [
            "fp_" + hashlib.blake2b(f"{self.world_seed}:{k}".encode(), digest_size=8).hexdigest()
            for k in range(n)
        ]
        # cold start: cards of launched issuers are inactive before their start day
        active = np.zeros(len(self.issuers) + 1)
        for e in self.events:
            if isinstance(e, BinLaunch):
                active[self.issuer_idx[e.issuer_id]] = max(active[self.issuer_idx[e.issuer_id]],
                                                           e.start_day)  # fmt: skip
        self.card_active_day = active[self.card_issuer]
        # card sampling tables: all cards, and per issuing country (for domestic shoppers)
        self.cards_all_cum = np.cumsum(activity) / activity.sum()
        self.cards_by_country: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ic = self.issuer_country[issuer]
        for cidx in np.unique(ic):
            rows = np.flatnonzero(ic == cidx)
            w = activity[rows]
            self.cards_by_country[int(cidx)] = (rows, np.cumsum(w) / w.sum())

    # -- lookups for requests coming from outside the vectorized generator
    def card_of(self, fingerprint: str) -> int:
        """Card index of a fingerprint; the unknown-card sentinel if the world never issued it."""
        if self._fp_index is None:
            self._fp_index = {f: k for k, f in enumerate(self.card_fingerprint)}
        return self._fp_index.get(fingerprint, self.n_cards)

    def issuer_of_bin(self, bins: np.ndarray) -> np.ndarray:
        """Issuer index for 6-digit BINs (ints); the unknown-issuer sentinel outside all ranges."""
        bins = np.asarray(bins, np.int64)
        k = np.searchsorted(self._bin_lo, bins, side="right") - 1
        kk = np.clip(k, 0, len(self._bin_lo) - 1)
        ok = (k >= 0) & (bins <= self._bin_hi[kk])
        return np.where(ok, self._bin_issuer[kk], self.unknown_issuer)

    def to_json(self) -> dict[str, Any]:
        """The resolved spec plus what the world seed derived (the full affinity matrix)."""
        return {
            "format_version": 1,
            "scenario": self.spec,
            "derived": {
                "countries": self.countries[:-1],
                "codes": self.codes,
                "advice_codes": self.macs[1:],
                "affinity_logit": {
                    r: {
                        i: round(float(self.affinity[a, b]), 6)
                        for b, i in enumerate(self.issuer_ids)
                    }
                    for a, r in enumerate(self.route_ids)
                },
                "cards": self.n_cards,
            },
        }


def build_world(spec: Mapping[str, Any]) -> World:
    """Parse and resolve a scenario spec (see scenarios.load_scenario) into a World."""
    return World(spec)
