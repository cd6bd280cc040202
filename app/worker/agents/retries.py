"""One RetryDecision per decline, from the card's counters as they stand now.

Called by the outcome agent on the card's partition, where the card's windows live. The policy
comes from the retry registry (AUTHPILOT_RETRY_POLICY); the network rules are hard constraints
inside every policy. Guarantee: the outcome agent's (at-least-once).
"""

from __future__ import annotations

import time
from typing import Any

from app.features.online import FeatureState
from app.monitoring.metrics import EVENTS_OUT
from app.retry import registry as retry_registry
from app.retry.counters import card_counters
from app.retry.engine import RetryParams, load_recovery
from app.retry.rules import NetworkRules
from app.worker.context import WorkerContext


class RetryDecider:
    def __init__(self, ctx: WorkerContext, card_features: FeatureState) -> None:
        s = ctx.settings
        rules = NetworkRules(s.visa_rules_variant)
        params = RetryParams(s.ev_margin_bps, s.retry_attempt_cost_minor,
                             recovery=load_recovery(s.retry_recovery_file,
                                                    s.retry_pay_calendar))  # fmt: skip
        self.policy = retry_registry.build(s.retry_policy, rules, params)
        self.card_features = card_features
        self.topic = ctx.topics.retry_decisions
        self.serde = ctx.codec.retry
        self.out = EVENTS_OUT.labels(s.topic_retry_decisions)

    async def after_decline(self, rec: dict[str, Any]) -> None:
        counters = card_counters(self.card_features, rec, rec["event_time"])
        d = self.policy.after_decline(rec, counters, int(time.time() * 1000))
        await self.topic.send(key=rec["card_fingerprint"].encode(), value=self.serde.encode(d))
        self.out.inc()
