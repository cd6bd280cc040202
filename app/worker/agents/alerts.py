"""Drift monitoring wiring: alerts to the alerts topic and Prometheus, gauges on a timer.

The detectors and the route/model state machines are pure (app.monitoring); the score agent
feeds them decisions, the outcome agent outcomes. Each worker monitors the partitions it owns:
with several workers every one still sees a collapsing route (its failures are on every
partition), only with 1/N of the samples, so detection takes longer in wall time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from faust.types import AppT

from app.monitoring.metrics import ALERTS, DRIFT_ALARM, EVENTS_OUT, ROUTE_DEMOTED
from app.worker.context import WorkerContext

log = logging.getLogger(__name__)


class AlertSink:
    """Encode and send alerts (Alert.avsc); count them; log each one."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.topic = ctx.topics.alerts
        self.serde = ctx.codec.serde("Alert")
        self.out = EVENTS_OUT.labels(ctx.settings.topic_alerts)

    async def send(self, alerts: list[dict[str, Any]]) -> None:
        for a in alerts:
            log.warning("drift alert %s %s: %s", a["kind"], a["subject"], a["message"])
            await self.topic.send(key=a["subject"].encode(), value=self.serde.encode(a))
            ALERTS.labels(a["kind"]).inc()
            self.out.inc()


def register(app: AppT, ctx: WorkerContext) -> None:
    if ctx.monitoring is None:
        return
    health = ctx.monitoring.health

    @app.timer(2.0)
    async def drift_gauges() -> None:
        now = int(time.time() * 1000)
        for (detector, target), level in health.alarm_levels(now).items():
            DRIFT_ALARM.labels(detector, target).set(level)
        for route in list(health.routes):
            ROUTE_DEMOTED.labels(route).set(int(health.is_demoted(route)))
