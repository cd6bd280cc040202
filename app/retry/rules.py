"""Card-network retry rules as hard constraints, loaded from app/data/network_rules/*.json.

The rules say whether a declined payment may be attempted again, not before when, and how
(3-D Secure step-up for SCA soft declines). They key on (network, response code) because the
same code means different things on different networks (65: SCA required on Mastercard,
withdrawal frequency on Visa). Tables are data so an operator can load the one their acquirer
publishes; `visa_variant` selects the limit regime (before/after April 2026).

Everything here is a pure function of the decline and the card's recent history: the retry
engine asks `check()` first and only then weighs recovery probability against cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.contracts.vocab import DAY_MS, HOUR_MS

RULES_DIR = Path(__file__).resolve().parents[1] / "data" / "network_rules"
VisaVariant = Literal["current", "2026-04"]


@dataclass(frozen=True)
class Attempt:
    """One past attempt of a card, as the rules need it."""

    time_ms: int
    merchant_id: str
    amount_minor: int
    initiator: str  # CIT / MIT
    approved: bool
    reattempt: bool  # attempt > 1 of its payment


@dataclass
class CardHistory:
    """Attempts of one card, oldest first; the last 30 days are all the rules look at."""

    attempts: list[Attempt] = field(default_factory=list)

    def add(self, a: Attempt) -> None:
        self.attempts.append(a)
        horizon = a.time_ms - 31 * DAY_MS
        while self.attempts and self.attempts[0].time_ms < horizon:
            self.attempts.pop(0)


@dataclass(frozen=True)
class CardActivity:
    """The card's recent attempts and approvals, from the same rings (the recovery model's
    card features: app.retry.recovery_model)."""

    n_24h: float = 0.0
    ok_24h: float = 0.0
    n_30d: float = 0.0  # at this merchant
    ok_30d: float = 0.0


@dataclass(frozen=True)
class Counters:
    """The counters the network limits are written in, as of one moment, and the card's
    history they were read with."""

    declines_24h: int = 0
    reattempts_30d_cit: int = 0
    reattempts_30d_mit: int = 0
    declines_card_merchant_amount_30d: int = 0
    card: CardActivity = field(default=CardActivity(), compare=False)  # not a limit


def counters_at(h: CardHistory, merchant_id: str, amount_minor: int, now_ms: int) -> Counters:
    """Counters for a retry of (card, merchant, amount) at now_ms, from the card's history."""
    d24 = cit = mit = cma = 0
    for a in h.attempts:
        age = now_ms - a.time_ms
        if age < 0 or age >= 30 * DAY_MS:
            continue
        if not a.approved and age < DAY_MS:
            d24 += 1
        if a.merchant_id == merchant_id:
            if a.reattempt:
                if a.initiator == "MIT":
                    mit += 1
                else:
                    cit += 1
            if not a.approved and a.amount_minor == amount_minor:
                cma += 1
    return Counters(d24, cit, mit, cma)


@dataclass(frozen=True)
class Verdict:
    """What the rules allow for the next attempt of a declined payment."""

    allowed: bool
    not_before_ms: int
    require_3ds: bool
    reasons: tuple[str, ...]


def _load(name: str, rules_dir: Path) -> dict[str, Any]:
    return json.loads((rules_dir / f"{name}.json").read_text())


class NetworkRules:
    """The rule tables of every network, and the check that applies them."""

    def __init__(self, visa_variant: VisaVariant = "current", rules_dir: Path = RULES_DIR) -> None:
        visa = _load("visa", rules_dir)
        self.visa_variant = visa_variant
        self._visa_cat = {c: cat for cat, codes in visa["categories"].items() for c in codes}
        self._visa_default = visa["default_category"]
        self._visa_sca = set(visa["sca_codes"])
        self._visa_rules = visa["variants"][visa_variant]
        mc = _load("mastercard", rules_dir)
        self._mac = mc["advice_codes"]
        self._mc_hard = set(mc["hard_codes"])
        self._mc_sca = set(mc["sca_codes"])
        self._mc_excessive = mc["excessive"]
        self._decline_fees = {"VISA": visa.get("decline_fees", []),
                              "MASTERCARD": mc.get("decline_fees", [])}  # fmt: skip
        # Other networks: Visa's category 1 list is the conservative common denominator.
        self._generic_hard = set(visa["categories"]["1"])

    def decline_fee(self, decline: dict[str, Any]) -> float:
        """The network's fee for a declined attempt like this one (minor units; 0 for most):
        what a retry that is declined the same way costs on top of its route's fee."""
        fee = 0.0
        for f in self._decline_fees.get(decline["network"], ()):
            code_ok = "codes" not in f or decline["response_code"] in f["codes"]
            advice_ok = "advice_codes" not in f or decline.get("advice_code") in f["advice_codes"]
            initiator_ok = "initiator" not in f or decline.get("initiator") == f["initiator"]
            if code_ok and advice_ok and initiator_ok:
                fee += float(f["fee_minor"])
        return fee

    def visa_category(self, code: str) -> str:
        return self._visa_cat.get(code, self._visa_default)

    def check(
        self, decline: dict[str, Any], counters: Counters, now_ms: int | None = None
    ) -> Verdict:
        """May the payment of this declined attempt be attempted again, when, and how?

        `decline` carries network, response_code, advice_code, initiator, three_ds and
        event_time (ms). The verdict's not_before_ms is the earliest time the rules allow.
        """
        network = decline["network"]
        code = decline["response_code"]
        t = decline["event_time"] if now_ms is None else now_ms
        if network == "VISA":
            return self._visa(decline, code, counters, t)
        if network == "MASTERCARD":
            return self._mastercard(decline, code, counters, t)
        if code in self._generic_hard:
            return Verdict(False, t, False, (f"{network}_HARD_DECLINE:{code}",))
        return Verdict(True, t, False, (f"{network}_SOFT_DECLINE:{code}",))

    def _visa(self, d: dict[str, Any], code: str, c: Counters, t: int) -> Verdict:
        if code in self._visa_sca:
            if d.get("three_ds"):
                return Verdict(False, t, False, ("SCA_DECLINED_WITH_3DS",))
            return Verdict(True, t, True, ("SCA_STEP_UP:VISA_1A",))
        cat = self.visa_category(code)
        if cat in self._visa_rules["never_retry_categories"]:
            return Verdict(False, t, False, (f"VISA_CATEGORY_{cat}_NEVER_RETRY:{code}",))
        if cat in self._visa_rules["new_details_categories"]:
            return Verdict(False, t, False, (f"VISA_CATEGORY_{cat}_NEW_DETAILS_REQUIRED:{code}",))
        for rule_name in ("reattempt_limit_30d", "other_reattempt_limit_30d"):
            rule = self._visa_rules.get(rule_name)
            if rule is None or cat not in rule["categories"]:
                continue
            if rule["split_by_initiator"]:
                used = c.reattempts_30d_mit if d["initiator"] == "MIT" else c.reattempts_30d_cit
            else:
                used = c.reattempts_30d_cit + c.reattempts_30d_mit
            if used >= rule["limit"]:
                return Verdict(
                    False, t, False, (f"VISA_REATTEMPT_LIMIT:{used}/{rule['limit']}:cat{cat}",)
                )
        return Verdict(True, t, False, (f"VISA_CATEGORY_{cat}:{code}",))

    def _mastercard(self, d: dict[str, Any], code: str, c: Counters, t: int) -> Verdict:
        reasons: list[str] = []
        not_before = t
        mac = d.get("advice_code")
        if mac and mac in self._mac:
            rule = self._mac[mac]
            if rule["action"] in ("never", "new_details"):
                return Verdict(False, t, False, (f"MC_MAC_{mac}_{rule['action'].upper()}",))
            if rule["action"] == "delay":
                not_before = d["event_time"] + int(rule["delay_hours"] * HOUR_MS)
                reasons.append(f"MC_MAC_{mac}_DELAY_{rule['delay_hours']}H")
        if code in self._mc_hard:
            return Verdict(False, t, False, (f"MC_HARD_DECLINE:{code}",))
        ex = self._mc_excessive
        if c.declines_24h >= ex["declines_per_card_24h"]:
            return Verdict(False, t, False, (f"MC_EXCESSIVE_24H:{c.declines_24h}",))
        if c.declines_card_merchant_amount_30d >= ex["declines_per_card_merchant_amount_30d"]:
            return Verdict(
                False, t, False, (f"MC_EXCESSIVE_30D:{c.declines_card_merchant_amount_30d}",)
            )
        if code in self._mc_sca:
            if d.get("three_ds"):
                return Verdict(False, t, False, ("SCA_DECLINED_WITH_3DS",))
            return Verdict(True, max(not_before, t), True, ("SCA_STEP_UP:MC_65", *reasons))
        return Verdict(True, max(not_before, t), False, (f"MC_SOFT_DECLINE:{code}", *reasons))
