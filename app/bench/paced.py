"""Paced load for latency: requests at a fixed rate, produce->decision time per request.

The client plays the gateway with the latency reference's librdkafka settings (app.bench.echo:
linger 0, Nagle off, 2 ms fetch cap, a poll() loop that wakes on the first message), so the
floor it measures is Kafka's on this machine, not the harness's batching. With `outcomes` it
draws one outcome per decision for the decided route and produces it at once: the worker's
learning path runs while latency is measured. It never follows RetryDecisions (the offered
load stays the stated rate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from app.bench.echo import TUNED_CONSUMER, TUNED_PRODUCER
from app.config import Settings
from app.contracts.codec import Codec
from app.harness.sample import SampleTraffic
from app.kafka.connection import confluent_config

FRACTIONS = (0.25, 0.50, 0.75)  # of the measured closed-loop capacity


def paced_rates(capacity: float, fractions: Sequence[float] = FRACTIONS) -> list[float]:
    """Offered rates (whole requests per second, at least 1) at `fractions` of `capacity`."""
    return [max(1.0, float(round(capacity * f))) for f in fractions]


def due_now(elapsed: float, rate: float, sent: int) -> int:
    """Requests to send now so that `sent` keeps up with `rate` x `elapsed` (the first one at
    elapsed 0); never negative."""
    return max(0, int(elapsed * rate) + 1 - sent)


def percentiles_ms(latencies_us: Sequence[float], qs: Sequence[float] = (50, 99)) -> list[float]:
    """Percentiles in milliseconds (NaN when nothing was measured)."""
    if not latencies_us:
        return [float("nan")] * len(qs)
    return [float(x) / 1000 for x in np.percentile(np.asarray(latencies_us), list(qs))]


@dataclass(frozen=True)
class LatencyPoint:
    offered: float
    sent: int
    decided: int
    p50_ms: float
    p99_ms: float


def paced_run(
    s: Settings, rate: float, seconds: float, outcomes: bool, seed: int = 11
) -> LatencyPoint:
    """Offer `rate` requests/s for `seconds` to s.topic_requests; wait for their decisions."""
    world = SampleTraffic(seed)  # requests, in the producer thread
    draws = SampleTraffic(seed + 1)  # outcome draws, in this thread
    codec = Codec(s)
    conf = confluent_config(s)
    producer = Producer({**conf, **TUNED_PRODUCER})
    consumer = Consumer(
        {
            **conf,
            **TUNED_CONSUMER,
            "group.id": f"{s.app_id}-paced-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    md = consumer.list_topics(s.topic_decisions, timeout=30)
    parts = []
    for p in md.topics[s.topic_decisions].partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(s.topic_decisions, p), timeout=30)
        parts.append(TopicPartition(s.topic_decisions, p, high))
    consumer.assign(parts)
    pending: dict[str, tuple[dict[str, Any], float]] = {}
    lock = threading.Lock()
    done_producing = threading.Event()
    sent = [0]

    def produce() -> None:
        enc, topic = codec.request.encode, s.topic_requests
        t_start = time.monotonic()
        while (elapsed := time.monotonic() - t_start) < seconds:
            due = due_now(elapsed, rate, sent[0])
            if due == 0:
                time.sleep(min(0.001, 1.0 / rate))
                continue
            for _ in range(due):
                req = world.next_request(int(time.time() * 1000))
                value = enc(req)
                with lock:
                    pending[req["request_id"]] = (req, time.perf_counter())
                producer.produce(topic, key=req["card_fingerprint"], value=value)
                sent[0] += 1
            producer.poll(0)
        producer.flush(30)
        done_producing.set()

    thread = threading.Thread(target=produce, name="paced-producer", daemon=True)
    thread.start()
    lat: list[float] = []
    dec, enc_out, topic_out = codec.decision.decode, codec.outcome.encode, s.topic_outcomes
    idle_since: float | None = None
    while True:
        m = consumer.poll(0.05)
        now = time.perf_counter()
        if m is None:
            if done_producing.is_set():
                with lock:
                    left = len(pending)
                idle_since = idle_since or now
                if left == 0 or now - idle_since > 15:
                    break
            continue
        if m.error():
            continue
        idle_since = None
        d = dec(m.value())
        with lock:
            entry = pending.pop(d["request_id"], None)
        if entry is None:
            continue
        req, t0 = entry
        lat.append((now - t0) * 1e6)
        if outcomes:
            out = draws.outcome(req, d["chosen_route"], int(time.time() * 1000))
            producer.produce(topic_out, key=req["card_fingerprint"], value=enc_out(out))
            producer.poll(0)
    thread.join(30)
    producer.flush(30)
    consumer.close()
    p50, p99 = percentiles_ms(lat)
    return LatencyPoint(rate, sent[0], len(lat), p50, p99)
