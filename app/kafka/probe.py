"""Is the broker reachable from this worker? One metadata request every few seconds.

aiokafka reconnects by itself and Faust keeps its agents running while the cluster is away,
so nothing in either says "the broker is down" to a readiness probe: measured, /readyz stayed 200
through a 200 s broker outage. A librdkafka metadata request (list_topics of one topic) on an
executor thread answers it without touching the worker's own clients.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.kafka.connection import worker_client_config

# A probe that does not answer within this long counts as unreachable. The timer probes every
# PROBE_EVERY_S; a /readyz poll does not read that answer when it is older than FRESH_S but
# waits for a round trip of its own (BrokerProbe.fresh). Reading the timer's answer alone left
# /readyz 200 for up to ~1.5 s after a broker SIGKILL: 200 on 3 of 30 polls of a 47 s outage
# (chaos --short, every stop from 32 to 38); with a 5 s period, 7 of 30 of a 15 s outage. A
# round trip to a live broker on the same network is ~1 ms, so a poll costs nothing to answer.
PROBE_TIMEOUT_S = 1.0
PROBE_EVERY_S = 1.0
FRESH_S = 0.1
# The poll's own round trip answers well inside a Kubernetes probe's default 1 s timeout, so a
# broker that just went away reads 503 with its error, not a timed-out probe.
FRESH_TIMEOUT_S = 0.5


@dataclass
class BrokerProbe:
    s: Settings
    reachable: bool = True  # until the first probe says otherwise: startup has its own gate
    checked_at: float = 0.0
    error: str | None = None
    _admin: Any = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def check(self, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """One metadata round trip (blocking: run it off the event loop)."""
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({**worker_client_config(self.s), "socket.timeout.ms": 1000})
        try:
            self._admin.list_topics(self.s.topic_requests, timeout=timeout_s)
            self.reachable, self.error = True, None
        except Exception as exc:  # KafkaException: transport failure, timeout
            self.reachable, self.error = False, str(exc)
        self.checked_at = time.monotonic()
        return self.reachable

    async def fresh(self, max_age_s: float = FRESH_S) -> bool:
        """The broker's reachability as of at most `max_age_s` ago: the last answer when it is
        that recent or says unreachable (a stale "no" errs towards not ready, and the timer
        turns it within PROBE_EVERY_S of the broker's return), else one more round trip on an
        executor thread, FRESH_TIMEOUT_S at most. Concurrent callers share one round trip (the
        lock), so a burst of polls is one metadata request."""
        if not self.reachable or time.monotonic() - self.checked_at <= max_age_s:
            return self.reachable
        async with self._lock:
            if self.reachable and time.monotonic() - self.checked_at > max_age_s:
                await asyncio.get_running_loop().run_in_executor(None, self.check, FRESH_TIMEOUT_S)
        return self.reachable
