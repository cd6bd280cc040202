"""Closed-loop traffic: requests to Kafka, decisions back, outcomes drawn for the chosen route.

It plays the upstream gateway. It produces AuthorizationRequests with confluent-kafka at a target
rate, consumes RoutingDecisions, draws each outcome from a traffic source
(app.harness.traffic.TrafficSource) for the route the decision chose, publishes
AuthorizationOutcomes, and shows rate, approval rate and the end-to-end latency (request
produced -> decision consumed) percentiles live.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from app.config import Settings
from app.contracts.codec import Codec
from app.contracts.records import next_attempt
from app.harness.traffic import TrafficSource
from app.kafka.connection import confluent_config


@dataclass
class LoadStats:
    """Running totals; latencies in microseconds, kept for percentiles."""

    produced: int = 0
    decided: int = 0
    approved: int = 0
    outcomes: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    latencies_us: list[float] = field(default_factory=list)
    duplicates: int = 0
    retries_scheduled: int = 0
    retries_sent: int = 0
    retries_approved: int = 0
    retries_stopped: int = 0

    def percentiles(self, qs: tuple[float, ...] = (50, 99)) -> list[float]:
        if not self.latencies_us:
            return [float("nan")] * len(qs)
        return [float(x) for x in np.percentile(np.asarray(self.latencies_us), qs)]


class LoadGenerator:
    """One producer thread, one consumer thread; stops after a duration or a request count."""

    def __init__(
        self,
        settings: Settings,
        source: TrafficSource,
        rate: float,
        duration: float | None = None,
        max_requests: int | None = None,
        group_id: str | None = None,
        on_decision: Callable[[dict[str, Any]], None] | None = None,
        outcomes: bool = True,
        on_outcome: Callable[[dict[str, Any], dict[str, Any], float], None] | None = None,
        client_logger: logging.Logger | None = None,
    ) -> None:
        """on_outcome(decision, outcome, produce->decision us) per outcome drawn; client_logger
        receives librdkafka's log lines (default: stderr, as librdkafka prints them)."""
        self.s = settings
        self.source = source
        self.rate = rate
        self.duration = duration
        self.max_requests = max_requests
        self.stats = LoadStats()
        self.on_decision = on_decision
        self.send_outcomes = outcomes
        self.on_outcome = on_outcome
        self._group = group_id or f"authpilot-loadgen-{int(time.time() * 1000)}"
        self._codec = Codec(settings)
        self._pending: dict[str, tuple[dict[str, Any], float]] = {}
        # request_id -> (declined request, route it took, response code), until its retry
        # decision arrives
        self._declined: dict[str, tuple[dict[str, Any], str, str]] = {}
        self._retries: list[tuple[float, int, dict[str, Any]]] = []  # heap: (due, seq, request)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._done_producing = threading.Event()
        self._stop = threading.Event()
        conf: dict[str, Any] = dict(confluent_config(settings))
        if client_logger is not None:
            conf["logger"] = client_logger
        self._producer = Producer({**conf, "linger.ms": 2, "enable.idempotence": True})
        self._consumer = Consumer(
            {
                **conf,
                "group.id": self._group,
                "auto.offset.reset": "latest",
                "enable.auto.commit": True,
                "fetch.wait.max.ms": 5,
            }
        )

    def _produce_loop(self) -> None:
        serde = self._codec.request
        t_start = time.monotonic()
        sent = 0
        topic = self.s.topic_requests
        while not self._stop.is_set():
            elapsed = time.monotonic() - t_start
            if self.duration is not None and elapsed >= self.duration:
                break
            if self.max_requests is not None and sent >= self.max_requests:
                break
            self._send_due_retries(serde, topic)
            due = int(elapsed * self.rate) + 1 - sent
            if due <= 0:
                time.sleep(min(0.002, 1.0 / self.rate))
                continue
            for _ in range(min(due, 1000)):
                now_ms = int(time.time() * 1000)
                req = self.source.next_request(now_ms)
                value = serde.encode(req)
                with self._lock:
                    self._pending[req["request_id"]] = (req, time.perf_counter())
                while True:
                    try:
                        self._producer.produce(topic, key=req["card_fingerprint"], value=value)
                        break
                    except BufferError:
                        self._producer.poll(0.01)
                sent += 1
            self._producer.poll(0)
            self.stats.produced = sent
        self._producer.flush(30)
        self._done_producing.set()

    def _send_due_retries(self, serde: Any, topic: str) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._retries or self._retries[0][0] > now:
                    return
                _, _, req = heapq.heappop(self._retries)
                self._pending[req["request_id"]] = (req, time.perf_counter())
            self._producer.produce(topic, key=req["card_fingerprint"], value=serde.encode(req))
            self.stats.retries_sent += 1

    def _schedule_retry(self, d: dict[str, Any]) -> None:
        """Follow a RetryDecision: the next attempt of the payment, when and how it says."""
        with self._lock:
            entry = self._declined.pop(d["request_id"], None)
        if entry is None:
            return
        req, last_route, last_code = entry
        if d["action"] != "RETRY":
            self.stats.retries_stopped += 1
            return
        nxt = next_attempt(req, d, last_route, last_code)
        if nxt is None:
            return
        speedup = getattr(self.source, "speedup", 60.0)
        delay_s = (nxt["event_time"] - req["event_time"]) / 1000.0 / speedup
        with self._lock:
            heapq.heappush(self._retries, (time.monotonic() + delay_s, next(self._seq), nxt))
        self.stats.retries_scheduled += 1

    def _consume_loop(self, ready: threading.Event) -> None:
        serde = self._codec.decision
        out_serde = self._codec.outcome
        topic_out = self.s.topic_outcomes

        # Assign every partition at its current end before the first request is produced, so
        # no decision can be missed by a lazily resolved 'latest' offset.
        parts = []
        for topic in (self.s.topic_decisions, self.s.topic_retry_decisions):
            md = self._consumer.list_topics(topic, timeout=30)
            for p in md.topics[topic].partitions:
                tp = TopicPartition(topic, p)
                _, high = self._consumer.get_watermark_offsets(tp, timeout=30)
                parts.append(TopicPartition(topic, p, high))
        self._consumer.assign(parts)
        retry_serde = self._codec.retry
        retry_topic = self.s.topic_retry_decisions
        ready.set()
        idle_since: float | None = None
        while not self._stop.is_set():
            # consume() blocks until the batch is full or the timeout passes: a long timeout would
            # add itself to every measured latency at low rates.
            msgs = self._consumer.consume(200, timeout=0.005)
            now = time.perf_counter()
            if not msgs:
                if self._done_producing.is_set():
                    with self._lock:
                        outstanding = len(self._pending)
                    idle_since = idle_since or now
                    if outstanding == 0 or now - idle_since > 15:
                        break
                continue
            idle_since = None
            for m in msgs:
                if m.error():
                    continue
                if m.topic() == retry_topic:
                    self._schedule_retry(retry_serde.decode(m.value()))
                    continue
                d = serde.decode(m.value())
                with self._lock:
                    entry = self._pending.pop(d["request_id"], None)
                if entry is None:
                    self.stats.duplicates += 1
                    continue
                req, t0 = entry
                self.stats.latencies_us.append((now - t0) * 1e6)
                self.stats.decided += 1
                route = d["chosen_route"]
                self.stats.by_route[route] = self.stats.by_route.get(route, 0) + 1
                if self.on_decision:
                    self.on_decision(d)
                if not self.send_outcomes:
                    continue
                out = self.source.outcome(req, route, int(time.time() * 1000))
                self.stats.outcomes += 1
                self.stats.approved += out["approved"]
                if self.on_outcome:
                    self.on_outcome(d, out, self.stats.latencies_us[-1])
                if req["attempt"] > 1:
                    self.stats.retries_approved += out["approved"]
                if not out["approved"]:
                    with self._lock:
                        self._declined[req["request_id"]] = (req, route, out["response_code"])
                while True:
                    try:
                        self._producer.produce(
                            topic_out, key=req["card_fingerprint"], value=out_serde.encode(out)
                        )
                        break
                    except BufferError:
                        self._producer.poll(0.01)
            self._producer.poll(0)
        self._producer.flush(30)

    def produce_only(self) -> tuple[int, float]:
        """Produce as fast as the target rate allows, no decisions awaited: (sent, seconds)."""
        t0 = time.monotonic()
        self._produce_loop()
        return self.stats.produced, time.monotonic() - t0

    def run(self, show: bool = True, assign_timeout: float = 60.0) -> LoadStats:
        """Run until done; prints a live line to stderr every second when show is set."""
        ready = threading.Event()
        consumer = threading.Thread(target=self._consume_loop, args=(ready,), daemon=True)
        consumer.start()
        if not ready.wait(assign_timeout):
            self._stop.set()
            raise RuntimeError("decision consumer got no partition assignment in time")
        producer = threading.Thread(target=self._produce_loop, daemon=True)
        t0 = time.monotonic()
        producer.start()
        last = (t0, 0)
        try:
            while consumer.is_alive():
                consumer.join(1.0)
                if show:
                    now = time.monotonic()
                    rate = (self.stats.decided - last[1]) / max(now - last[0], 1e-9)
                    last = (now, self.stats.decided)
                    print(self.summary_line(rate, now - t0), file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            self._stop.set()
        producer.join(5)
        consumer.join(5)
        self._consumer.close()
        return self.stats

    def summary_line(self, rate: float, elapsed: float) -> str:
        st = self.stats
        p50, p99 = st.percentiles()
        appr = st.approved / st.outcomes if st.outcomes else float("nan")
        routes = " ".join(f"{r}:{n}" for r, n in sorted(st.by_route.items()))
        retries = (f" retries sent {st.retries_sent}/{st.retries_scheduled} approved "
                   f"{st.retries_approved} stopped {st.retries_stopped}")  # fmt: skip
        return (
            f"[{elapsed:6.1f}s] produced {st.produced:>7} decided {st.decided:>7} "
            f"({rate:7.0f}/s) approval {appr:6.1%} e2e p50 {p50 / 1000:6.2f} ms "
            f"p99 {p99 / 1000:6.2f} ms{retries} | {routes}"
        )
