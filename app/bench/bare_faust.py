"""The framework limit: one Faust agent doing the references' work with the worker's settings.

Run as `python -m app.bench.bare_faust` (configured by AUTHPILOT_* like the worker: the
capacity benchmark starts it as a subprocess, and varies AUTHPILOT_PRODUCER_LINGER_MS). It
builds its app as app.worker.app.build_app does (the same fetch-wait cap and producer options,
earliest offsets, one event at a time through stream.events() as the worker's guarded agents,
run without Faust's spinner) but has no tables, no web server and no policy: decode, first
route, encode, send. What the worker decides per second below this figure is what authpilot
itself costs. AUTHPILOT_BENCH_FAUST_DEFAULTS=1 runs it as the worker ran before it was tuned
(linger 0, Faust's spinner and its DEBUG root logger): the "before" of the settings.
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
from app.worker.app import cap_fetch_wait, idempotent_producer, producer_options, run_faust


def build_bare_app(s: Settings) -> faust.App:
    """A Faust app with one agent: requests -> first-route decisions."""
    cap_fetch_wait(s.fetch_max_wait_ms)
    idempotent_producer()  # the worker's producer, so the ratio compares like with like
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
        **producer_options(s),
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
    if os.environ.get("AUTHPILOT_BENCH_FAUST_DEFAULTS") == "1":
        s = Settings(producer_linger_ms=0)
        faust.Worker(build_bare_app(s), loglevel=s.log_level.upper()).execute_from_commandline()
    else:
        s = Settings()
        run_faust(build_bare_app(s), s)


if __name__ == "__main__":
    main()
