"""Traffic: when payments arrive and what they look like (merchant, card, amount, flags).

Arrival volume follows hour-of-day x weekday seasonality and surge events; each payment picks a
merchant by weight, a card (domestic to the merchant with the merchant's domestic_share, else
from all cards, more active cards more often), an amount from the merchant's lognormal, a
channel, CIT/MIT and recurring, and the SCA situation: PSD2 applies to card-not-present CIT
with both issuer and merchant in the EEA/UK; a share claims the low-value or TRA exemption,
the rest is sca_required and carries 3-D Secure with the merchant's three_ds_share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.contracts.vocab import CHANNELS, DAY_MS, HOUR_MS
from app.sim.seasonality import hour_buckets, hour_weekday
from app.sim.truth import Batch
from app.sim.world import BinLaunch, Surge, World

_POS = CHANNELS.index("POS")
_REJECTION_ROUNDS = 64  # cards not yet launched are redrawn; far more rounds than ever needed


@dataclass
class Payments:
    """First attempts of a set of payments, as world indices."""

    t_ms: np.ndarray
    merchant: np.ndarray
    card: np.ndarray
    amount: np.ndarray  # int64 minor units
    channel: np.ndarray
    mit: np.ndarray
    recurring: np.ndarray
    sca_required: np.ndarray
    three_ds: np.ndarray
    exemption: np.ndarray  # index into EXEMPTIONS (0 = none)

    def __len__(self) -> int:
        return len(self.t_ms)


def volume_curve(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Hour-bucket start times over the horizon and their relative arrival volume."""
    starts = hour_buckets(world.start_ms, world.days)
    hour, dow = hour_weekday(starts)
    s = world.seasonality
    w = np.asarray(s.hourly_volume)[hour] * np.asarray(s.weekday_volume)[dow]
    days = (starts - world.start_ms) / DAY_MS
    for e in world.events:
        if isinstance(e, Surge):
            w = np.where((days >= e.start_day) & (days < e.end_day), w * e.volume_mult, w)
    # the last bucket may be partial
    w[-1] *= min(1.0, (world.end_ms - starts[-1]) / HOUR_MS)
    return starts, w


def payment_times(world: World, n: int, rng: np.random.Generator) -> np.ndarray:
    """n sorted arrival times (epoch ms) over the horizon, by inverse CDF of the volume curve."""
    starts, w = volume_curve(world)
    cum = np.cumsum(w) / w.sum()
    u = np.sort(rng.random(n))
    k = np.minimum(np.searchsorted(cum, u, side="right"), len(w) - 1)
    prev = np.where(k > 0, cum[np.maximum(k - 1, 0)], 0.0)
    frac = np.clip((u - prev) / (cum[k] - prev), 0.0, 1.0 - 1e-9)
    t = starts[k] + (frac * HOUR_MS).astype(np.int64)
    return np.minimum(t, world.end_ms - 1)


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def _sample_cards(world: World, merchant: np.ndarray, days: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    n = len(merchant)
    dom_share = np.array([m.domestic_share for m in world.merchants])[merchant]
    mc = world.merchant_country[merchant]

    def draw(rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), np.int64)
        u = rng.random(len(rows))
        dom = rng.random(len(rows)) < dom_share[rows]
        mcr = mc[rows]
        done = np.zeros(len(rows), bool)
        for c, (cards, cum) in world.cards_by_country.items():
            m = dom & (mcr == c)
            out[m] = cards[_pick(cum, u[m])]
            done |= m
        out[~done] = _pick(world.cards_all_cum, u[~done])
        return out

    card = draw(np.arange(n))
    if any(isinstance(e, BinLaunch) for e in world.events):
        for _ in range(_REJECTION_ROUNDS):
            bad = np.flatnonzero(days < world.card_active_day[card])
            if not len(bad):
                break
            card[bad] = draw(bad)
        else:
            raise ValueError("no launched cards to draw from: check bin_launch start_day")
    return card


def sample_payments(world: World, t_ms: np.ndarray, rng: np.random.Generator) -> Payments:
    """Payment attributes for arrivals at t_ms (vectorized)."""
    n = len(t_ms)
    ms = world.merchants
    mw = np.array([m.weight for m in ms], float)
    merchant = _pick(np.cumsum(mw) / mw.sum(), rng.random(n))
    days = (t_ms - world.start_ms) / DAY_MS
    card = _sample_cards(world, merchant, days, rng)

    sigma = np.array([m.amount_sigma for m in ms])[merchant]
    amount = world.merchant_amount_median[merchant] * np.exp(sigma * rng.standard_normal(n))
    for e in world.events:
        if isinstance(e, Surge):
            amount = np.where(
                (days >= e.start_day) & (days < e.end_day), amount * e.amount_mult, amount
            )
    amount = np.maximum(np.rint(amount), 50).astype(np.int64)

    ch_cum = np.zeros((len(ms), len(CHANNELS)))
    for k, m in enumerate(ms):
        w = np.array([m.channels.get(c, 0.0) for c in CHANNELS], float)
        ch_cum[k] = np.cumsum(w / w.sum())
        ch_cum[k, -1] = 1.0
    channel = np.minimum((rng.random(n)[:, None] >= ch_cum[merchant]).sum(1), len(CHANNELS) - 1)
    cnp = channel != _POS
    u = rng.random((n, 5))
    mit = cnp & (u[:, 0] < np.array([m.mit_share for m in ms])[merchant])
    recurring = mit & (u[:, 1] < np.array([m.mit_recurring_share for m in ms])[merchant])

    s = world.sca
    issuer_country = world.issuer_country[world.card_issuer[card]]
    in_scope = (
        cnp
        & ~mit
        & world.country_sca[issuer_country]
        & world.country_sca[world.merchant_country[merchant]]
    )
    low = in_scope & (amount <= s.low_value_limit_minor) & (u[:, 2] < s.low_value_exemption_share)
    tra = in_scope & ~low & (u[:, 3] < s.tra_exemption_share)
    sca_required = in_scope & ~low & ~tra
    exemption = np.zeros(n, np.int64)
    exemption[low] = 1
    exemption[tra] = 2
    exemption[mit] = 3
    p3ds = np.where(
        sca_required,
        np.array([m.three_ds_share for m in ms])[merchant],
        np.array([m.three_ds_other_share for m in ms])[merchant],
    )
    three_ds = cnp & ~mit & (u[:, 4] < p3ds)
    return Payments(t_ms, merchant, card, amount, channel, mit, recurring, sca_required,
                    three_ds, exemption)  # fmt: skip


def to_batch(world: World, p: Payments, t_ms: np.ndarray | None = None,
             three_ds: np.ndarray | None = None) -> Batch:  # fmt: skip
    """The truth's view of payments (optionally at other times / with 3DS stepped up)."""
    issuer = world.card_issuer[p.card]
    return Batch(
        t_ms=p.t_ms if t_ms is None else t_ms,
        card=p.card,
        issuer=issuer,
        funding=world.card_funding[p.card],
        network=world.issuer_network[issuer],
        issuer_country=world.issuer_country[issuer],
        merchant_country=world.merchant_country[p.merchant],
        mcc_logit=world.merchant_mcc_logit[p.merchant],
        amount=p.amount.astype(float),
        amount_ref=world.merchant_amount_median[p.merchant].astype(float),
        channel=p.channel,
        mit=p.mit,
        recurring=p.recurring,
        sca_required=p.sca_required,
        three_ds=p.three_ds if three_ds is None else three_ds,
    )
