"""The framework limit: one Faust agent doing the references' work with the worker's settings.

Run as `python -m app.bench.bare_faust` (configured by AUTHPILOT_* like the worker, plus
AUTHPILOT_BENCH_LINGER_MS); the capacity benchmark starts it as a subprocess. It builds its app
as app.worker.app.build_app does (the same fetch-wait cap, producer acks -1, linger 0 unless
told otherwise, earliest offsets, one event at a time through stream.events() as the worker's
guarded agents) but has no tables, no web server and no policy: decode, first route, encode,
send. What the worker decides per second below this figure is what authpilot itself costs.
"""

from __future__ import annotations

import os
import time
from typing import Any

import faust

from app.bench.echo import first_route_decision
from app.config import Settings
from app.contracts.codec import Codec
from app.kafka.connection import faust_broker, faust_credentials
from app.worker.app import cap_fetch_wait


def build_bare_app(s: Settings, linger_ms: int) -> faust.App:
    """A Faust app with one agent: requests -> first-route decisions."""
    cap_fetch_wait(s.fetch_max_wait_ms)
    app = faust.App(
        s.app_id,
        broker=faust_broker(s),
        broker_credentials=faust_credentials(s),
        store="memory://",
        datadir=str(s.data_dir),
        web_enabled=False,
        topic_partitions=s.partitions,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        producer_linger_ms=linger_ms,
        producer_acks=-1,
    )
    codec = Codec(s)
    decode, encode = codec.request.decode, codec.decision.encode
    src = app.topic(s.topic_requests, key_serializer="raw", value_serializer="raw")
    dst = app.topic(s.topic_decisions, key_serializer="raw", value_serializer="raw")

    async def bare(stream: Any) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            msg = event.message
            d = first_route_decision(decode(msg.value), started)
            await dst.send(key=msg.key, value=encode(d))

    app.agent(src, name="bare")(bare)
    return app


def main() -> None:
    s = Settings()
    app = build_bare_app(s, int(os.environ.get("AUTHPILOT_BENCH_LINGER_MS", "0")))
    faust.Worker(app, loglevel=s.log_level.upper()).execute_from_commandline()


if __name__ == "__main__":
    main()
