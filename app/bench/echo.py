"""The processors without authpilot in them: what decode, first route, encode, produce costs.

`first_route_decision` is the whole "policy" of every reference (the Python loop, the bare Faust
agent, the latency echo): a RoutingDecision for the first candidate, encoded with the real
decision codec, so each reference pays the same Avro work as the worker and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from confluent_kafka import Consumer, Producer

from app.config import Settings
from app.contracts.codec import Codec
from app.kafka.connection import confluent_config

# librdkafka settings of the latency reference: no produce batching, Nagle off (a small write
# otherwise waits for the previous one's ACK), and a broker that parks an idle fetch 2 ms at most
# (a fetch returns as soon as data arrives; the cap bounds the multi-partition case).
TUNED_PRODUCER = {"linger.ms": 0, "socket.nagle.disable": True}
TUNED_CONSUMER = {"fetch.wait.max.ms": 2, "socket.nagle.disable": True}


def first_route_decision(req: dict[str, Any], started: float) -> dict[str, Any]:
    """A RoutingDecision choosing the first candidate (`started`: perf_counter at intake)."""
    return {
        "request_id": req["request_id"],
        "payment_id": req["payment_id"],
        "attempt": req["attempt"],
        "decided_at": int(time.time() * 1000),
        "chosen_route": req["candidates"][0]["route_id"],
        "scores": [],
        "propensity": 1.0,
        "policy": "echo",
        "arm": "default",
        "model_version": None,
        "reason_codes": [],
        "decision_latency_us": int((time.perf_counter() - started) * 1e6),
    }


def python_loop(s: Settings, n: int, progress: Callable[[int], None] | None = None) -> None:
    """Drain `n` requests from the start of s.topic_requests into s.topic_decisions.

    The Python limit: one consumer and one producer in one thread, batches of up to 1000
    messages, librdkafka's default 5 ms linger (throughput, not latency, is measured here).
    """
    codec = Codec(s)
    conf = confluent_config(s)
    c = Consumer(
        {
            **conf,
            "group.id": f"{s.app_id}-pyloop",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    p = Producer({**conf, "linger.ms": 5})
    c.subscribe([s.topic_requests])
    dec_req, enc_dec, topic = codec.request.decode, codec.decision.encode, s.topic_decisions
    done = 0
    try:
        while done < n:
            for m in c.consume(1000, timeout=0.1):
                if m.error():
                    continue
                t0 = time.perf_counter()
                d = first_route_decision(dec_req(m.value()), t0)
                while True:
                    try:
                        p.produce(topic, key=m.key(), value=enc_dec(d))
                        break
                    except BufferError:
                        p.poll(0.01)
                done += 1
            p.poll(0)
            if progress is not None:
                progress(done)
        p.flush(30)
    finally:
        c.close()


class TunedEcho:
    """The latency reference: the first-route decision from a tight poll loop (poll() returns
    the moment a message is there), tuned producer and consumer, in a thread of this process."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuned-echo", daemon=True)

    def _run(self) -> None:
        codec = Codec(self.s)
        conf = confluent_config(self.s)
        c = Consumer(
            {
                **conf,
                **TUNED_CONSUMER,
                "group.id": f"{self.s.app_id}-echo",
                "auto.offset.reset": "latest",
            }
        )
        p = Producer({**conf, **TUNED_PRODUCER})
        c.subscribe([self.s.topic_requests], on_assign=lambda *_: self._ready.set())
        dec_req, enc_dec, topic = (
            codec.request.decode,
            codec.decision.encode,
            self.s.topic_decisions,
        )
        while not self._stop.is_set():
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            t0 = time.perf_counter()
            p.produce(
                topic, key=m.key(), value=enc_dec(first_route_decision(dec_req(m.value()), t0))
            )
            p.poll(0)
        p.flush(10)
        c.close()

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("echo consumer got no partition assignment in 60 s")
        time.sleep(1)  # the assigned 'latest' offsets resolve before the first request
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(15)
