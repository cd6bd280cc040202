"""The worker's web endpoints: Prometheus metrics, liveness, readiness, feature debugging.

Served by Faust's web server on AUTHPILOT_WEB_PORT; the consumer-lag gauge is updated here too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from app.features.definitions import FEATURE_NAMES
from app.features.online import FeatureState, new_buffer
from app.kafka.probe import PROBE_EVERY_S, BrokerProbe
from app.monitoring.metrics import CONSUMER_LAG, exposition
from app.state.windows.count import stat_keys, unpack_snapshot
from app.worker.context import WorkerContext

log = logging.getLogger(__name__)


def register(app: faust.App, ctx: WorkerContext) -> None:
    s = ctx.settings
    lag_topics = {s.topic_requests, s.topic_outcomes, ctx.topics.owner_updates.get_topic_name()}

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses parameters in content_type, so the full header goes in headers.
        return web.bytes(
            exposition(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    # The owners' state (staged values included), not the published snapshots: exact on the
    # worker that owns the keys; snapshots lag by up to a checkpoint interval.
    st = ctx.state
    reader = FeatureState(
        {"card": st.card, "route": st.features, "bin": st.features, "merchant": st.features}
    )

    sr_get = st.sr_snapshots.get  # what the router reads: the published snapshots

    def _snapshot(value: bytes | None) -> list[int] | None:
        snap = unpack_snapshot(value)
        return None if snap is None else list(snap)

    @app.page("/debug/features")
    class DebugFeatures(faust.web.View):
        """POST a JSON list of requests: the feature rows this worker would build for them now,
        and the success-rate snapshots (successes, samples, route failures) the router would
        read per candidate route at the bin, network x issuer-country and route levels.

        For operators asking "what did the model see", and for the restart test. Card-level
        features are only on the worker that owns the card's partition.
        """

        async def post(self, request: Any) -> Any:
            reqs = await request.json()
            buf = new_buffer(64)
            rows = {}
            rates: dict[str, dict[str, list[list[int] | None]]] = {}
            for r in reqs:
                out = reader.fill(r, buf)
                rows[r["request_id"]] = [[None if v != v else v for v in row] for row in out]
                rates[r["request_id"]] = {
                    c["route_id"]: [_snapshot(sr_get(k.encode()))
                                    for k in stat_keys(c["route_id"], r["bin"], r["network"],
                                                       r["issuer_country"])]
                    for c in r["candidates"]
                }  # fmt: skip
            return self.json({"names": list(FEATURE_NAMES), "rows": rows, "success_rates": rates})

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    probe = BrokerProbe(s)

    @app.timer(PROBE_EVERY_S)
    async def probe_broker() -> None:
        await asyncio.get_running_loop().run_in_executor(None, probe.check)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Ready: tables recovered, not rebalancing, the broker answered a metadata request
        within the last 0.1 s (this poll's own when the timer's is older: app.kafka.probe),
        and the promoted champion and retry model (if any) are the ones served. Each false
        condition is named in the body."""
        # faust's TableManagerT omits .recovery, which its only implementation, TableManager, has
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        registry = ctx.control.snapshot()
        checks = {
            "recovered": recovery.completed.is_set(),
            "not_rebalancing": not app.rebalancing,
            "broker_reachable": await probe.fresh(),
            "control_read": ctx.control.caught_up.is_set(),
            "champion_served": not ctx.models.champion_missing(registry),
            "retry_model_served": not ctx.models.retry_missing(registry),
        }
        ready = all(checks.values())
        body: dict[str, Any] = {"ready": ready, "checks": checks}
        if probe.error:
            body["broker_error"] = probe.error
        return web.json(body, status=200 if ready else 503)

    @app.timer(5.0)
    async def consumer_lag() -> None:
        # From the committed offset, not the consumer's position: a worker that reads on but
        # cannot commit (a hole it never processed, app.kafka.offsets) must show as lagging.
        consumer: Any = app.consumer
        try:
            committed = consumer._committed_offset
            for tp in consumer.assignment():
                if tp.topic not in lag_topics:
                    continue
                done = committed.get(tp)  # None until the partition's first commit
                hw = consumer.highwater(tp)
                if done is not None and hw is not None:
                    CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(hw - done, 0))
        except Exception:  # lag is observability, never a reason to fail
            log.debug("lag probe failed", exc_info=True)
