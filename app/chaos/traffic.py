"""The chaos suite's gateway: a steady request stream and an outcome loop, watched live.

A producer thread sends SampleTraffic requests at a fixed rate; a consumer thread reads every
decision from the end of the decisions topic as it was at start and, for the first decision of
each request, sends an outcome drawn for the chosen route, so a worker killed mid-stream replays
outcomes as well as requests. Both remember only what the live waits need (which partition each
request went to, the newest decision time per partition, the undecided ids); the verifier
works from what the topics hold, not from this.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from app.config import Settings
from app.contracts.codec import Codec
from app.harness.sample import SampleTraffic
from app.kafka.connection import confluent_config


class ClosedLoop:
    """Requests at `rate` per second (0: none, decisions watched only) and outcomes for them."""

    def __init__(self, s: Settings, rate: float, seed: int, outcomes: bool = True,
                 cards: int = 2000) -> None:  # fmt: skip
        self.s = s
        self.rate = rate
        self.outcomes = outcomes
        self.world = SampleTraffic(seed, cards=cards)
        self.draws = SampleTraffic(seed + 1000, cards=cards)  # outcome draws: its own rng
        self.codec = Codec(s)
        conf = confluent_config(s)
        self._p = Producer({**conf, "linger.ms": 5, "enable.idempotence": True})
        self._c = Consumer({**conf, "group.id": f"chaos-loop-{uuid.uuid4().hex[:8]}",
                            "enable.auto.commit": False, "fetch.wait.max.ms": 20})  # fmt: skip
        self._lock = threading.Lock()
        self.partition_of: dict[str, int] = {}
        self.pending: dict[str, dict[str, Any]] = {}  # produced, not decided yet
        self.decided: set[str] = set()
        self.latest: dict[int, int] = {}  # request partition -> newest decided_at seen
        self.produced = 0
        self.delivered = 0
        self.failed = 0
        self.decisions = 0
        self.outcomes_sent = 0
        self._stop_producing = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ClosedLoop:
        topic = self.s.topic_decisions
        md = self._c.list_topics(topic, timeout=30).topics[topic]
        parts = []
        for p in sorted(md.partitions):
            _, high = self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            parts.append(TopicPartition(topic, p, high))
        self._c.assign(parts)
        self._threads = [threading.Thread(target=self._consume, daemon=True)]
        if self.rate > 0:
            self._threads.append(threading.Thread(target=self._produce, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop_producing(self) -> None:
        self._stop_producing.set()

    def close(self) -> None:
        self._stop_producing.set()
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._p.flush(30)
        self._c.close()

    def expect(self, request_id: str) -> None:
        """Wait for a decision for a request someone else sent (wait_drained counts it)."""
        with self._lock:
            self.pending.setdefault(request_id, {})

    # -- sending -----------------------------------------------------------------------------
    def send_request(self, req: dict[str, Any], headers: Any = None) -> None:
        rid = req["request_id"]

        def report(err: Any, msg: Any) -> None:
            with self._lock:
                if err is None:
                    self.partition_of[rid] = msg.partition()
                    self.delivered += 1
                else:
                    self.failed += 1
                    self.pending.pop(rid, None)

        with self._lock:
            self.pending[rid] = req
            self.produced += 1
        value = self.codec.request.encode(req)
        while True:
            try:
                self._p.produce(self.s.topic_requests, key=req["card_fingerprint"], value=value,
                                headers=headers, on_delivery=report)  # fmt: skip
                break
            except BufferError:
                self._p.poll(0.05)
        self._p.poll(0)

    def _produce(self) -> None:
        t0 = time.monotonic()
        sent = 0
        while not self._stop_producing.is_set():
            due = int((time.monotonic() - t0) * self.rate) + 1 - sent
            if due <= 0:
                time.sleep(min(0.005, 1.0 / self.rate))
                self._p.poll(0)
                continue
            for _ in range(min(due, 500)):
                self.send_request(self.world.next_request(int(time.time() * 1000)))
                sent += 1
        self._p.flush(60)

    def _consume(self) -> None:
        serde = self.codec.decision
        out_serde = self.codec.outcome
        while not self._stop.is_set():
            msgs = self._c.consume(500, timeout=0.1)
            for m in msgs:
                if m.error() is not None or m.value() is None:
                    continue
                try:
                    d = serde.decode(m.value())
                except Exception:
                    continue
                rid = d["request_id"]
                with self._lock:
                    self.decisions += 1
                    req = self.pending.pop(rid, None)
                    self.decided.add(rid)
                    p = self.partition_of.get(rid)
                    if p is not None and d["decided_at"] > self.latest.get(p, 0):
                        self.latest[p] = d["decided_at"]
                if not req or not self.outcomes:
                    continue
                o = self.draws.outcome(req, d["chosen_route"], int(time.time() * 1000))
                while True:
                    try:
                        self._p.produce(self.s.topic_outcomes, key=req["card_fingerprint"],
                                        value=out_serde.encode(o))  # fmt: skip
                        break
                    except BufferError:
                        self._p.poll(0.05)
                self.outcomes_sent += 1
            self._p.poll(0)

    # -- waits -------------------------------------------------------------------------------
    def undecided(self) -> int:
        with self._lock:
            return len(self.pending)

    def wait_drained(self, timeout: float, quiet: float = 0.0,
                     progress: Callable[[str], None] | None = None,
                     stall: float | None = None) -> int:  # fmt: skip
        """Until every delivered request has a decision (then `quiet` s more), timeout, or
        (with `stall`) that many seconds without a new decision; returns how many are still
        undecided. `progress` gets a status line every 10 s."""
        deadline = time.monotonic() + timeout
        self._p.flush(max(1.0, min(timeout, 60.0)))
        shown = last_move = time.monotonic()
        seen = self.decisions
        while time.monotonic() < deadline and self.undecided() > 0:
            time.sleep(0.2)
            if self.decisions != seen:
                seen, last_move = self.decisions, time.monotonic()
            elif stall is not None and time.monotonic() - last_move > stall:
                break
            if progress is not None and time.monotonic() - shown >= 10:
                shown = time.monotonic()
                progress(f"draining: {self.status()}")
        if quiet:
            time.sleep(quiet)
        return self.undecided()

    def wait_partitions(self, partitions: list[int], since_ms: int, timeout: float) -> bool:
        """Until each partition had a decision dated after since_ms (or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(self.latest.get(p, 0) >= since_ms for p in partitions):
                    return True
            time.sleep(0.1)
        return False

    def status(self) -> str:
        with self._lock:
            return (f"produced {self.produced} decided {len(self.decided)} "
                    f"(decisions {self.decisions}) outcomes {self.outcomes_sent} "
                    f"undecided {len(self.pending)}")  # fmt: skip
