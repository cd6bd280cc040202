"""The domain vocabulary, defined once: the schemas' enums as tuples, and the time units.

Each tuple lists the symbols of its Avro enum (schemas/*.avsc) in the schema's order, and a
unit test holds them equal, so Python cannot drift from the wire contract. The order is part of
the meaning: a feature encodes a network or funding type as its index here (so a compiled model
depends on it), and the simulator draws channels by index (so its random streams do too).
"""

from __future__ import annotations

NETWORKS = ("VISA", "MASTERCARD", "AMEX", "DISCOVER", "OTHER")  # enum CardNetwork
FUNDING = ("CREDIT", "DEBIT", "PREPAID", "UNKNOWN")  # enum Funding
CHANNELS = ("ECOM", "MOTO", "IN_APP", "POS")  # enum Channel
INITIATORS = ("CIT", "MIT")  # enum Initiator
FAILURE_SIDES = ("NONE", "ROUTE", "ISSUER")  # enum FailureSide
RETRY_ACTIONS = ("RETRY", "STOP")  # enum RetryAction
# AuthorizationRequest.sca_exemption is a nullable string, not an enum (a new exemption must not
# make old readers fail), but these are the spellings its doc lists and the ingest check accepts.
SCA_EXEMPTIONS = ("LOW_VALUE", "TRA", "TRUSTED_BENEFICIARY", "MIT")
ALERT_KINDS = (
    "ROUTE_DEMOTED",
    "ROUTE_RESTORED",
    "MODEL_FALLBACK",
    "MODEL_RESTORED",
    "FEATURE_DRIFT",
    "SCORE_DRIFT",
    "CALIBRATION_DRIFT",
    "OTHER",
)  # enum AlertKind

# Card-not-present: every channel but the terminal (SCA and most fraud rules apply to these).
CNP_CHANNELS = frozenset(c for c in CHANNELS if c != "POS")

# Event times are epoch milliseconds everywhere (the schemas' timestamp-millis).
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# Plausible event times: 2000-01-01 <= t < 2100-01-01 in epoch ms. Epoch seconds (1.7e9 in
# 2024) fall below it and microseconds (1.7e15) above it: the two usual unit mistakes. The
# ingest check holds logs to it, and the worker's stream clock its first event
# (app.contracts.bounds).
EPOCH_MS_MIN = 946_684_800_000
EPOCH_MS_MAX = 4_102_444_800_000
