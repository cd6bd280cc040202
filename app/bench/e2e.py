"""End-to-end benchmark: the worker's throughput and latency beside a raw Kafka echo.

The reference is an echo service written directly on confluent-kafka (librdkafka): it consumes
the same encoded requests, decodes them, answers with the first candidate route and produces a
decision. It pays for the same two Kafka hops and the same Avro work, so the gap between it and
the worker is what Faust, the policy and the route statistics cost. Each rate is offered for a
fixed time; a run "keeps up" when every request was decided and the p50 stays near the idle
latency (a growing queue shows up as a p50 of seconds).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from app.config import Settings
from app.contracts.codec import Codec
from app.harness.loadgen import LoadGenerator
from app.harness.process import running_worker
from app.harness.sample import SampleTraffic
from app.kafka.connection import confluent_config
from app.kafka.topics import ensure_topics


class EchoRouter:
    """The reference: consume requests, decide the first candidate, produce a decision."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        codec = Codec(self.s)
        conf = confluent_config(self.s)
        c = Consumer({**conf, "group.id": f"echo-{time.time_ns()}", "fetch.wait.max.ms": 5,
                      "auto.offset.reset": "latest"})  # fmt: skip
        p = Producer({**conf, "linger.ms": 0})
        c.subscribe([self.s.topic_requests])
        while not self._stop.is_set():
            for m in c.consume(200, timeout=0.005):
                if m.error():
                    continue
                t0 = time.perf_counter()
                r = codec.request.decode(m.value())
                route = r["candidates"][0]["route_id"]
                d = {
                    "request_id": r["request_id"], "payment_id": r["payment_id"],
                    "attempt": r["attempt"], "decided_at": int(time.time() * 1000),
                    "chosen_route": route, "scores": [], "propensity": 1.0, "policy": "echo",
                    "arm": "default", "model_version": None, "reason_codes": [],
                    "decision_latency_us": int((time.perf_counter() - t0) * 1e6),
                }  # fmt: skip
                p.produce(self.s.topic_decisions, key=m.key(), value=codec.decision.encode(d))
            p.poll(0)
        p.flush(10)
        c.close()

    def __enter__(self) -> EchoRouter:
        self._thread.start()
        time.sleep(3)  # group join
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(15)


def _measure(s: Settings, rate: float, duration: float, closed: bool) -> dict[str, float]:
    gen = LoadGenerator(s, SampleTraffic(int(rate)), rate, duration, outcomes=closed)
    st = gen.run(show=False)
    p50, p99 = st.percentiles()
    return {
        "offered": rate,
        "decided_per_s": st.decided / duration,
        "complete": float(st.decided == st.produced + st.retries_sent),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
    }


def run_bench(s: Settings, rates: list[float], duration: float, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    tag = time.strftime("%H%M%S")
    ref = s.model_copy(update={f"topic_{n}": f"bench{tag}.echo.{n}" for n in (
        "requests", "outcomes", "decisions", "dead_letter")})  # fmt: skip
    wrk = s.model_copy(update={f"topic_{n}": f"bench{tag}.worker.{n}" for n in (
        "requests", "outcomes", "decisions", "dead_letter")})  # fmt: skip
    ensure_topics(ref)
    ensure_topics(wrk)
    rows: list[tuple[str, dict[str, float]]] = []

    def report(label: str, r: dict[str, float]) -> None:
        rows.append((label, r))
        print(
            f"{label:<22} offered {r['offered']:6.0f}/s decided {r['decided_per_s']:7.1f}/s "
            f"complete {bool(r['complete'])!s:<5} p50 {r['p50_ms']:8.2f} ms "
            f"p99 {r['p99_ms']:8.2f} ms",
            flush=True,
        )

    with EchoRouter(ref):
        for rate in rates:
            report("echo (librdkafka ref)", _measure(ref, rate, duration, closed=False))
    import os

    for k, v in {"TOPIC_REQUESTS": wrk.topic_requests, "TOPIC_OUTCOMES": wrk.topic_outcomes,
                 "TOPIC_DECISIONS": wrk.topic_decisions,
                 "TOPIC_DEAD_LETTER": wrk.topic_dead_letter,
                 "APP_ID": f"bench{tag}"}.items():  # fmt: skip
        os.environ[f"AUTHPILOT_{k}"] = v
    with running_worker(wrk, f"bench-worker-{tag}"):
        for rate in rates:
            report("worker, open loop", _measure(wrk, rate, duration, closed=False))
        for rate in rates:
            report("worker, closed loop", _measure(wrk, rate, duration, closed=True))
    _write_report(out, rows, duration)
    return 0


def _write_report(out: Path, rows: list[tuple[str, dict[str, float]]], duration: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for label in dict.fromkeys(lab for lab, _ in rows):
        pts = [r for lab, r in rows if lab == label]
        ax[0].plot(
            [r["offered"] for r in pts], [r["decided_per_s"] for r in pts], "o-", label=label
        )
        ax[1].plot([r["offered"] for r in pts], [r["p50_ms"] for r in pts], "o-", label=label)
    ax[0].set(xlabel="offered req/s", ylabel="decided req/s", title="throughput")
    ax[1].set(xlabel="offered req/s", ylabel="p50 produce->decision ms", yscale="log",
              title="end-to-end latency")  # fmt: skip
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(out / "bench-e2e.png", dpi=110)
    lines = [
        "# End-to-end benchmark",
        "",
        f"Each rate offered for {duration:.0f} s on this machine (broker, worker and load "
        "generator share its cores). Latency: request produced -> decision consumed.",
        "",
        "| run | offered/s | decided/s | all decided | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['offered']:.0f} | {r['decided_per_s']:.1f} | "
            f"{bool(r['complete'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    lines += ["", "![throughput and latency](bench-e2e.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    print(f"report: {out / 'report.md'}", flush=True)
