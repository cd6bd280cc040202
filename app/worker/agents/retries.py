"""One RetryDecision per decline, from the card's counters as they stand now.

Called by the outcome agent on the card's partition, where the card's windows live. The policy
comes from the retry registry (AUTHPILOT_RETRY_POLICY); the network rules are hard constraints
inside every policy. The engine prices retry times with the recovery model promoted with
`--role retry` (the worker's ModelSlots hot-swap it like the router; a decline is priced
entirely by one model or by the table, which serves until one is loaded).

Guarantee: at most one RetryDecision per declined request_id, read back like the score agent's
decisions (app.state.decided): to the outcome's partition number, with its offset in a header.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from app.contracts.codec import Codec
from app.features.online import FeatureState
from app.kafka.connection import worker_client_config
from app.monitoring.metrics import EVENTS_OUT, REPLAYED
from app.retry import registry as retry_registry
from app.retry.counters import card_counters
from app.retry.engine import RetryParams, load_recovery
from app.retry.recovery_model import CompiledRecovery
from app.retry.registry import RetryPolicy
from app.retry.rules import NetworkRules
from app.state.decided import OFFSET_HEADER, ReadBack
from app.worker.context import WorkerContext

log = logging.getLogger(__name__)


class RetryDecider:
    def __init__(self, ctx: WorkerContext, card_features: FeatureState) -> None:
        s = ctx.settings
        self.rules = NetworkRules(s.visa_rules_variant)
        recovery = load_recovery(s.retry_recovery_file, s.retry_pay_calendar)
        self.params = RetryParams(
            s.ev_margin_bps,
            s.retry_attempt_cost_minor,
            recovery=recovery,
            explore=s.retry_explore,
            attempt_surcharge_minor=s.retry_attempt_surcharge_minor,
        )
        self.policy_name = s.retry_policy
        self.models = ctx.models
        self.served: CompiledRecovery | None = None
        self.policy: RetryPolicy = retry_registry.build(s.retry_policy, self.rules, self.params)
        self.card_features = card_features
        self.topic = ctx.topics.retry_decisions
        self.serde = ctx.codec.retry
        self.out = EVENTS_OUT.labels(s.topic_retry_decisions)
        self.replayed = REPLAYED.labels(s.topic_retry_decisions)
        self.decided = ctx.state.retried
        reader = Codec(s).retry  # its own serde: read_back decodes on an executor thread
        self.sent = ReadBack(self.decided, worker_client_config(s), s.topic_retry_decisions,
                             lambda value: str(reader.decode(value)["request_id"]))  # fmt: skip

    async def after_decline(self, rec: dict[str, Any], partition: int, offset: int,
                            timestamp_s: float | None,
                            attempt_fee: float | None = None) -> None:  # fmt: skip
        """Decide and send, unless a RetryDecision for this decline was already sent (an
        outcome replayed after a crash before its state was checkpointed: its state is applied
        again, its answer is not sent twice). `attempt_fee`: the declined route's fee, from
        its decision (None when this worker did not make it)."""
        if not self.decided.loaded(partition):
            await self.sent.ensure(partition, timestamp_s)
        rid = rec["request_id"]
        if self.decided.get(partition, rid) is not None:
            self.replayed.inc()
            return
        counters = card_counters(self.card_features, rec, rec["event_time"])
        d = self._policy().after_decline(rec, counters, int(time.time() * 1000), attempt_fee)
        value = self.serde.encode(d)
        await self.topic.send(key=rec["card_fingerprint"].encode(), value=value,
                              partition=partition,
                              headers=[(OFFSET_HEADER, b"%d" % offset)])  # fmt: skip
        self.decided.put(partition, rid, offset, value)
        self.out.inc()

    def _policy(self) -> RetryPolicy:
        """The policy over the retry model served now (rebuilt only when the slot changed)."""
        model = self.models.retry
        if model is not self.served:
            self.served = model
            self.policy = retry_registry.build(self.policy_name, self.rules,
                                               replace(self.params, model=model))  # fmt: skip
        return self.policy
