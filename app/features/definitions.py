"""Every feature authpilot's models see, defined once for the stream and for SQL.

A feature is (entity, window, metric). An entity is a key built from an outcome or a request
(card, card x merchant, BIN, merchant, route, BIN x route, ...); a window is a ring of time
buckets (width, count); a metric is a per-outcome increment (attempts, approvals, issuer soft
declines, hard declines, route failures, amount, CIT/MIT reattempts). The online path
(app.features.online) and the offline SQL (app.features.offline) are both generated from the
tables below, and the model manifest records `feature_hash()` so a worker refuses a model
trained on other definitions.

Window semantics, identical online and offline: a feature at request time T counts outcomes with
event_time < T whose bucket floor(event_time / width) lies in [floor(T / width) - n + 1,
floor(T / width)]: a sliding window at bucket granularity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Per-outcome increments. Order is the column order inside a ring.
METRICS = ("n", "ok", "soft", "hard", "route_fail", "amount", "reatt_cit", "reatt_mit")
M = {m: i for i, m in enumerate(METRICS)}

# Codes no retry can fix (Visa categories 1 and 3, Mastercard hard codes); the rest are soft.
# Part of the feature definitions (and so of feature_hash): an operator loading another rules
# table changes retry rules, not what a trained model's hard-decline counts meant.
# tests/unit/contracts/test_vocab.py holds it equal to the bundled rules.
HARD_CODES = frozenset(
    ["04", "07", "12", "14", "15", "41", "43", "46", "54", "55", "57", "82", "N7", "R0", "R1", "R3"]
)  # fmt: skip


@dataclass(frozen=True)
class Window:
    name: str
    width_s: int
    buckets: int


W1H = Window("1h", 300, 12)
W24H = Window("24h", 3600, 24)
W7D = Window("7d", 86400, 7)
W30D = Window("30d", 86400, 30)


@dataclass(frozen=True)
class Entity:
    """A keyed state: `fields` of the record joined with '|' (route_id comes from the route
    being scored at request time and from the route taken at outcome time)."""

    name: str
    fields: tuple[str, ...]
    owner: str  # which partitioning owns it: card (co-partitioned), route, bin, merchant
    windows: tuple[Window, ...]
    # (window name, metric) pairs exported as counts, and metrics exported as rates of n
    counts: tuple[tuple[str, str], ...]
    rates: tuple[tuple[str, str], ...] = ()

    def key(self, rec: dict[str, Any], route_id: str | None = None) -> str:
        parts: list[str] = []
        for f in self.fields:
            if f != "route_id":
                parts.append(str(rec[f]))
            elif route_id is not None:
                parts.append(route_id)
            else:
                raise ValueError(f"entity {self.name!r} is keyed by route_id: pass the route")
        return f"{self.name}|" + "|".join(parts)


ENTITIES: tuple[Entity, ...] = (
    Entity("card", ("card_fingerprint",), "card", (W24H, W7D),
           counts=(("24h", "n"), ("24h", "ok"), ("24h", "soft"), ("24h", "hard"),
                   ("7d", "n"), ("7d", "ok"))),
    Entity("card_merchant", ("card_fingerprint", "merchant_id"), "card", (W30D,),
           counts=(("30d", "n"), ("30d", "ok"), ("30d", "reatt_cit"), ("30d", "reatt_mit"))),
    Entity("card_merchant_amount", ("card_fingerprint", "merchant_id", "amount_minor"), "card",
           (W30D,), counts=(("30d", "n"), ("30d", "ok"))),
    Entity("bin", ("bin",), "bin", (W1H, W24H),
           counts=(("1h", "n"), ("24h", "n")), rates=(("1h", "ok"), ("24h", "ok"),
                                                       ("24h", "soft"))),
    Entity("merchant", ("merchant_id",), "merchant", (W24H,),
           counts=(("24h", "n"),), rates=(("24h", "ok"),)),
    Entity("route", ("route_id",), "route", (W1H,),
           counts=(("1h", "n"),), rates=(("1h", "ok"), ("1h", "route_fail"))),
    Entity("bin_route", ("route_id", "bin"), "route", (W24H, W7D),
           counts=(("24h", "n"), ("7d", "n")), rates=(("24h", "ok"), ("7d", "ok"))),
    # Issuer-country x route over a month as well: a route that is nobody's default sees a few
    # explored attempts a day per issuer, too few for a daily rate to rank routes by.
    Entity("country_route", ("route_id", "network", "issuer_country"), "route",
           (W24H, W7D, W30D), counts=(("24h", "n"), ("30d", "n")),
           rates=(("24h", "ok"), ("7d", "ok"), ("30d", "ok"))),
    Entity("merchant_route", ("route_id", "merchant_id"), "route", (W7D,),
           counts=(("7d", "n"),), rates=(("7d", "ok"),)),
)  # fmt: skip

OWNERS = ("card", "route", "bin", "merchant")

# Features of the request and candidate route themselves (no state).
# days_since_payday / days_to_payday: the issuer country's pay cycle (app.features.paycycle).
REQUEST_FEATURES = (
    "log_amount", "attempt", "hour_of_day", "day_of_week", "card_not_present", "is_mit",
    "recurring", "sca_required", "three_ds", "network_code", "funding_code",
    "days_since_payday", "days_to_payday", "cross_border", "route_fee_bps",
)  # fmt: skip
# Card history that is not a window count. last_decline_today / _this_cycle: whether the card's
# last decline was on this UTC day / since the issuer country's last payday (0 when never or
# unknown). An issuer's verdict of the day and a card's funds in its pay cycle persist: in the
# closed loop the router's chosen p was +20 points over the outcomes where the last decline
# was today and +3.9 where it was this cycle (issuer_shift, seed 1; 2% and 19% of first
# attempts), a split of time since the decline the trees did not find from the raw seconds.
CARD_EXTRA = ("secs_since_last_decline", "last_decline_hard", "last_decline_today",
              "last_decline_this_cycle")  # fmt: skip


def feature_names() -> tuple[str, ...]:
    """The model's input columns, in order, online and offline."""
    names = list(REQUEST_FEATURES)
    for e in ENTITIES:
        names += [f"{e.name}_{w}_{m}" for w, m in e.counts]
        names += [f"{e.name}_{w}_{m}_rate" for w, m in e.rates]
    names += CARD_EXTRA
    return tuple(names)


FEATURE_NAMES = feature_names()
N_FEATURES = len(FEATURE_NAMES)


def feature_hash() -> str:
    """Hash of every definition above: a model trained on other definitions is refused."""
    spec = {
        "metrics": METRICS,
        "hard": sorted(HARD_CODES),
        "entities": [
            [e.name, e.fields, e.owner, [(w.name, w.width_s, w.buckets) for w in e.windows],
             e.counts, e.rates] for e in ENTITIES
        ],
        "request": REQUEST_FEATURES,
        "card_extra": CARD_EXTRA,
        "names": FEATURE_NAMES,
        "version": 1,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def increments(outcome: dict[str, Any]) -> list[int]:
    """The metric increments one outcome contributes (METRICS order)."""
    approved = bool(outcome["approved"])
    route_fail = outcome["failure_side"] == "ROUTE"
    hard = (not approved) and (not route_fail) and outcome["response_code"] in HARD_CODES
    soft = (not approved) and (not route_fail) and not hard
    reatt = outcome["attempt"] > 1
    mit = outcome.get("initiator") == "MIT"
    return [1, int(approved), int(soft), int(hard), int(route_fail), int(outcome["amount_minor"]),
            int(reatt and not mit), int(reatt and mit)]  # fmt: skip
