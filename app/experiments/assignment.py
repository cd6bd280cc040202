"""Experiment arms: hash(payment_id) mod 100, so every attempt of a payment stays in one arm.

The dispatcher calls `arm_for` once per request, so this module imports only the standard
library (no numpy/scipy: the statistics live in stats.py and are not needed to route).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HOLDOUT_ARM = "holdout"  # buckets [0, holdout_pct): the holdout policy
DEFAULT_ARM = "default"  # no arms configured (and decisions logged without an arm)
SHADOW_ARM = "shadow"  # challengers' decisions, never acted on


def bucket(payment_id: str) -> int:
    """0..99, stable across processes and restarts (blake2b, not Python's salted hash)."""
    return int.from_bytes(hashlib.blake2b(payment_id.encode(), digest_size=8).digest(), "big") % 100


def arm_for(payment_id: str, arms: Sequence[tuple[str, int]], holdout_pct: int = 0) -> str:
    """The arm of a payment: buckets [0, holdout) are the holdout, then arms by percentage."""
    b = bucket(payment_id)
    if b < holdout_pct:
        return HOLDOUT_ARM
    edge = holdout_pct
    for name, pct in arms:
        edge += pct
        if b < edge:
            return name
    return arms[-1][0]
