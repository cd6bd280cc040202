"""Capacity benchmark: the same pre-filled backlog drained by each processor, in one run.

`python -m app.bench.capacity [--quick] [--requests N] [--out DIR]`, on one broker (the local one
from AUTHPILOT_KAFKA_PORT, or AUTHPILOT_KAFKA_BOOTSTRAP). Every processor gets its own topics and
the same N sample-world AuthorizationRequests, and the figure is its drain rate:

  python   confluent-kafka loop in this process: decode, first route, encode, produce (the
           Python limit)
  faust    a bare Faust agent doing the same with the worker's Faust settings (producer
           linger, acks -1, fetch-wait cap, no spinner), a subprocess (the framework limit:
           every ratio's base); faust-before the same as the worker ran before its settings
           were measured (linger 0, Faust's spinner with a DEBUG root logger)
  sr, ev   the worker (`python -m app.cli worker`), requests only, success-rate policy; EV
           with a compiled model (trained on the sample world, cached under --model-cache)
  closed   the worker with one outcome per request: payments/s

Rates come from the decisions' own timestamps (first to last), so start-up, group joins and
this process's reading do not count. Open-loop workers are filled once ready (EV: once its
champion is loaded), at ~50x their rate, so the backlog is there before they get far.

Closed loop method: requests pre-filled, and each outcome produced the moment its decision is
read (outcomes drawn for the decided route, app.harness.sample.SampleTraffic.outcome). An
outcome then never precedes its decision, as in production, and the worker interleaves both
streams as it would under real traffic; pre-filling outcomes too would let it drain one topic
after the other. A payment is done when its decision is out and the worker has taken its
outcome and every internal message the outcome caused (its events_in counters reach the end of
each topic they count, confirmed on a second poll); payments/s = N / (done - first decision).

Latency: then, with that worker (state warm), paced load at 25/50/75% of the closed-loop
figure, outcomes flowing (app.bench.paced), p50/p99 produce->decision; beside it the tuned
librdkafka echo (app.bench.echo.TunedEcho) under the same client at the same rates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from app.bench.capacity_options import STAGES, add_arguments
from app.bench.paced import FRACTIONS, LatencyPoint, paced_rates, paced_run
from app.config import Settings
from app.contracts.codec import Codec
from app.harness.process import WorkerProcess
from app.harness.sample import SampleTraffic
from app.kafka.connection import bootstrap_servers, confluent_config

BASE = "faust"  # every ratio is to the bare Faust agent with the worker's settings
TOPICS = (
    "requests",
    "outcomes",
    "decisions",
    "retry_decisions",
    "shadow",
    "alerts",
    "control",
    "dead_letter",
)


@dataclass(frozen=True)
class Figure:
    """One processor's drain of the backlog: `events` done in `seconds`."""

    key: str
    label: str
    events: int
    seconds: float
    unit: str = "decisions/s"
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class LatencyRow:
    fraction: float
    worker: LatencyPoint
    echo: LatencyPoint


def span_seconds(timestamps_ms: Sequence[int]) -> float:
    """Seconds from the first to the last timestamp; one message interval is added (N events
    take N intervals, first to last spans N-1) so that N / span is the rate."""
    if len(timestamps_ms) < 2:
        return float("nan")
    span = (max(timestamps_ms) - min(timestamps_ms)) / 1000
    return span * len(timestamps_ms) / (len(timestamps_ms) - 1)


def ratios(figures: Sequence[Figure], base: str = BASE) -> dict[str, float]:
    """Each figure's rate over the base figure's rate (NaN without a base)."""
    ref = next((f.rate for f in figures if f.key == base), float("nan"))
    return {f.key: f.rate / ref if ref > 0 else float("nan") for f in figures}


def render_report(
    figures: Sequence[Figure], latency: Sequence[LatencyRow], meta: Mapping[str, Any]
) -> str:
    """The markdown report: the capacity table (ratios to bare Faust) and the latency table."""
    r = ratios(figures)
    lines = [
        "# Capacity benchmark",
        "",
        f"{meta['requests']} AuthorizationRequests per processor, one local broker "
        f"({meta['bootstrap']}), {meta['cpus']} CPUs shared by the broker, the processor and "
        f"this client; 1-min load average {meta['load'][0]:.1f} at start, {meta['load'][1]:.1f} at "
        "end (other work shares the machine: compare ratios within one run). "
        f"Command: `{meta['command']}`.",
        "",
        "| processor | rate | x bare Faust | note |",
        "|---|---|---|---|",
    ]
    for f in figures:
        lines.append(f"| {f.label} | {f.rate:,.0f} {f.unit} | {r[f.key]:.2f} | {f.note} |")
    if latency:
        lines += [
            "",
            "Produce->decision latency, paced load with one outcome per decision, at shares of "
            "the closed-loop capacity; the echo is the tuned librdkafka reference under the same "
            "client (linger 0, Nagle off, 2 ms fetch cap, poll loop).",
            "",
            "| load | offered/s | worker decided | worker p50 ms | worker p99 ms "
            "| echo p50 ms | echo p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in latency:
            w, e = row.worker, row.echo
            lines.append(
                f"| {row.fraction:.0%} | {w.offered:.0f} | {w.decided}/{w.sent} | "
                f"{w.p50_ms:.2f} | {w.p99_ms:.2f} | {e.p50_ms:.2f} | {e.p99_ms:.2f} |"
            )
    return "\n".join(lines) + "\n"


def summary(
    figures: Sequence[Figure], latency: Sequence[LatencyRow], meta: Mapping[str, Any]
) -> dict[str, Any]:
    r = ratios(figures)
    return {
        "meta": dict(meta),
        "capacity": [
            {**asdict(f), "rate": f.rate, "ratio_to_bare_faust": r[f.key]} for f in figures
        ],
        "latency": [asdict(row) for row in latency],
    }


# --- Kafka plumbing ------------------------------------------------------------------------


def stage_settings(base: Settings, tag: str, stage: str) -> Settings:
    """Settings of one processor: its own app id and topics."""
    topics = {f"topic_{t}": f"cap{tag}.{stage}.{t}" for t in TOPICS}
    return base.model_copy(update={"app_id": f"cap{tag}-{stage}", **topics})


def fill(s: Settings, backlog: Sequence[tuple[bytes, bytes]]) -> None:
    """Produce the encoded backlog to s.topic_requests, batched (fast: ~50x any processor)."""
    p = Producer({**confluent_config(s), "linger.ms": 20, "enable.idempotence": True})
    for key, value in backlog:
        while True:
            try:
                p.produce(s.topic_requests, key=key, value=value)
                break
            except BufferError:
                p.poll(0.01)
    if p.flush(60) != 0:
        raise RuntimeError("backlog not acknowledged within 60 s")


class Ends:
    """High watermarks of topics, summed over partitions."""

    def __init__(self, s: Settings) -> None:
        self._c = Consumer({**confluent_config(s), "group.id": f"{s.app_id}-ends"})

    def end(self, topic: str) -> int:
        md = self._c.list_topics(topic, timeout=30)
        if topic not in md.topics or md.topics[topic].error is not None:
            return 0
        return sum(
            self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in md.topics[topic].partitions
        )

    def close(self) -> None:
        self._c.close()


def read_all(s: Settings, topic: str, n: int, timeout: float = 60) -> list[tuple[int, bytes]]:
    """(timestamp ms, value) of the first `n` messages of `topic` (all partitions)."""
    c = Consumer(
        {**confluent_config(s), "group.id": f"{s.app_id}-read", "enable.auto.commit": False}
    )
    md = c.list_topics(topic, timeout=30)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.topics[topic].partitions])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(1000, timeout=0.5):
            value = m.value()
            if not m.error() and value is not None:
                out.append((m.timestamp()[1], value))
    c.close()
    return out


def watch(s: Settings, n: int, label: str, alive: Callable[[], bool], stall: float = 120) -> None:
    """Block until s.topic_decisions holds `n` messages, printing progress every second;
    RuntimeError if the processor dies or nothing moves for `stall` seconds."""
    ends = Ends(s)
    last, moved = 0, time.monotonic()
    t0 = time.monotonic()
    try:
        while True:
            have = ends.end(s.topic_decisions)
            now = time.monotonic()
            if have != last:
                moved = now
            print(
                f"  [{label}] {now - t0:6.1f}s decided {have}/{n} ({have - last:5d}/s)", flush=True
            )
            last = have
            if have >= n:
                return
            if not alive():
                raise RuntimeError(f"{label}: processor exited after {have}/{n} decisions")
            if now - moved > stall:
                raise RuntimeError(f"{label}: no decision for {stall:.0f} s at {have}/{n}")
            time.sleep(1.0)
    finally:
        ends.close()


def timed_figure(s: Settings, n: int, key: str, label: str, note: str = "") -> Figure:
    msgs = read_all(s, s.topic_decisions, n)
    if len(msgs) < n:
        raise RuntimeError(f"{label}: read {len(msgs)}/{n} decisions back")
    return Figure(key, label, n, span_seconds([t for t, _ in msgs]), note=note)


def delete_topics(base: Settings, tag: str) -> None:
    """Best effort: drop this run's topics (the broker is shared with other runs)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**confluent_config(base)})  # a copy typed as its stub wants
    names = [t for t in admin.list_topics(timeout=30).topics if f"cap{tag}" in t]
    if names:
        for f in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # a topic already gone is fine
                f.result()


# --- processors ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(
    s: Settings, data_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a subprocess configured only by `s` (its app id, topics, broker)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHPILOT_")}
    env.update(
        {
            "AUTHPILOT_KAFKA_BOOTSTRAP": bootstrap_servers(s),
            "AUTHPILOT_APP_ID": s.app_id,
            "AUTHPILOT_PARTITIONS": str(s.partitions),
            "AUTHPILOT_DATA_DIR": str(data_dir),
            "AUTHPILOT_WEB_PORT": str(_free_port()),
            "AUTHPILOT_LOG_LEVEL": "warning",
            "AUTHPILOT_PRODUCER_LINGER_MS": str(s.producer_linger_ms),
            "AUTHPILOT_STATE_CHECKPOINT_MS": str(s.state_checkpoint_ms),
            "AUTHPILOT_EVENT_TIME_CLOCK": "stream",  # simulated event times (app.contracts.bounds)
            **{f"AUTHPILOT_TOPIC_{t.upper()}": getattr(s, f"topic_{t}") for t in TOPICS},
        }
    )
    env.update(extra or {})
    return env


def run_python(s: Settings, backlog: Sequence[tuple[bytes, bytes]]) -> Figure:
    from app.bench.echo import python_loop
    from app.kafka.topics import ensure_topics

    ensure_topics(s)
    fill(s, backlog)
    n = len(backlog)
    t0, last = [time.monotonic()], [0]

    def progress(done: int) -> None:
        if time.monotonic() - t0[0] >= 1.0 or done >= n > last[0]:
            print(f"  [python] decided {done}/{n}", flush=True)
            t0[0], last[0] = time.monotonic(), done

    python_loop(s, n, progress)
    return timed_figure(
        s,
        n,
        "python",
        "confluent-kafka loop in Python: decode, first route, encode, produce (the Python limit)",
    )


def run_bare_faust(
    s: Settings, backlog: Sequence[tuple[bytes, bytes]], key: str, work: Path, logs: Path
) -> Figure:
    """The bare agent (app.bench.bare_faust): `faust` with the worker's settings, the base of
    every ratio; `faust-before` as the worker ran before its Faust settings were measured."""
    from app.kafka.topics import ensure_topics

    ensure_topics(s)
    fill(s, backlog)
    before = key == "faust-before"
    env = process_env(s, work / key, {"AUTHPILOT_BENCH_FAUST_DEFAULTS": "1" if before else "0"})
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{key}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.bench.bare_faust"], env=env, stdout=log, stderr=log
        )
    try:
        watch(s, len(backlog), key, lambda: proc.poll() is None)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    label = (
        "bare Faust agent, the settings the worker had before (linger 0, Faust's spinner "
        "with its DEBUG root logger)"
        if before
        else f"bare Faust agent doing the same with the worker's settings (linger "
        f"{s.producer_linger_ms} ms, no spinner): the framework limit"
    )
    return timed_figure(s, len(backlog), key, label)


def ensure_model(cache: Path) -> Path:
    """A compiled router/v1 trained on the sample world (as tests/modelkit.py builds them),
    reused while its feature hash is current; returns the model root."""
    import numpy as np

    from app.features.definitions import FEATURE_NAMES, feature_hash
    from app.features.offline import build_matrix
    from app.harness.sample import write_sample_log
    from app.models.calibration import choose
    from app.models.training.compile import compile_model
    from app.models.training.train import fit, time_split

    root = cache / "models"
    manifest = root / "router" / "v1" / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("feature_hash") == feature_hash():
        return root
    print(f"  [ev] training and compiling a model under {cache}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    split = time_split(build_matrix(write_sample_log(cache / "log", n=3000, seed=4)).df())
    booster = fit(split, rounds=20, params={"seed": 0}, show=False)
    cal, _ = choose(
        np.asarray(booster.predict(split.valid[list(FEATURE_NAMES)])),
        split.valid.approved.to_numpy().astype(float),
    )
    booster.save_model(str(cache / "model.txt"))
    compile_model(
        cache / "model.txt",
        root / "router" / "v1",
        name="router",
        version="v1",
        feature_names=list(FEATURE_NAMES),
        feature_hash=feature_hash(),
        calibration=cal,
        test_matrix=np.ascontiguousarray(split.test[list(FEATURE_NAMES)])[:16],
    )
    return root


class OutcomeFeeder:
    """The gateway of the closed loop: reads decisions from the start, produces each one's
    outcome at once (drawn for the decided route); records the first decision's timestamp."""

    def __init__(self, s: Settings, requests: Mapping[str, dict[str, Any]], seed: int) -> None:
        self.s = s
        self.requests = dict(requests)
        self.world = SampleTraffic(seed)
        self.first_ms: int | None = None
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outcome-feeder", daemon=True)

    def _run(self) -> None:
        s = self.s
        codec = Codec(s)
        conf = confluent_config(s)
        c = Consumer(
            {
                **conf,
                "group.id": f"{s.app_id}-feeder",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        md = c.list_topics(s.topic_decisions, timeout=30)
        c.assign(
            [
                TopicPartition(s.topic_decisions, p, OFFSET_BEGINNING)
                for p in md.topics[s.topic_decisions].partitions
            ]
        )
        p = Producer({**conf, "linger.ms": 1})
        dec, enc = codec.decision.decode, codec.outcome.encode
        while not self._stop.is_set():
            for m in c.consume(500, timeout=0.05):
                if m.error():
                    continue
                ts = m.timestamp()[1]
                self.first_ms = ts if self.first_ms is None else min(self.first_ms, ts)
                d = dec(m.value())
                req = self.requests.pop(d["request_id"], None)
                if req is None:
                    continue
                out = self.world.outcome(req, d["chosen_route"], int(time.time() * 1000))
                while True:
                    try:
                        p.produce(s.topic_outcomes, key=req["card_fingerprint"], value=enc(out))
                        break
                    except BufferError:
                        p.poll(0.01)
                self.sent += 1
            p.poll(0)
        p.flush(30)
        c.close()

    def start(self) -> OutcomeFeeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


_EVENTS_IN = re.compile(r'^authpilot_events_in_total\{topic="([^"]+)"\} (\S+)$', re.M)


def events_in(metrics_text: str) -> dict[str, float]:
    """topic -> messages the worker took off it (its authpilot_events_in counters)."""
    return {t: float(v) for t, v in _EVENTS_IN.findall(metrics_text)}


def drained(counts: Mapping[str, float], ends: Mapping[str, int], outcomes: str, n: int) -> bool:
    """Every counted topic consumed to its end, and all `n` outcomes among them."""
    return counts.get(outcomes, 0) >= n and all(counts.get(t, 0) >= e for t, e in ends.items())


def wait_drained(
    s: Settings, w: WorkerProcess, feeder: OutcomeFeeder, n: int, stall: float = 120
) -> float:
    """Wall time (s since the epoch) at which the worker had taken every outcome of the loop
    and every internal message they caused; printed progress every second."""
    ends = Ends(s)
    t0 = time.monotonic()
    last_print, last_total, moved = 0.0, -1.0, time.monotonic()
    candidate: float | None = None
    try:
        while True:
            counts = events_in(w.metrics())
            now = time.monotonic()
            topic_ends = {t: ends.end(t) for t in counts}
            if drained(counts, topic_ends, s.topic_outcomes, n):
                if candidate is not None:
                    return candidate  # still drained a poll later: nothing was in flight
                candidate = time.time()
            else:
                candidate = None
            total = sum(counts.values())
            if total != last_total:
                moved, last_total = now, total
            if now - last_print >= 1.0:
                last_print = now
                print(
                    f"  [closed] {now - t0:6.1f}s outcomes fed {feeder.sent}/{n}, worker took "
                    + ", ".join(
                        f"{t.split('.')[-1]} {c:.0f}/{topic_ends[t]}" for t, c in counts.items()
                    ),
                    flush=True,
                )
            if not w.running:
                raise RuntimeError(f"closed loop: worker exited\n{w.log_tail()}")
            if now - moved > stall:
                raise RuntimeError(f"closed loop: nothing consumed for {stall:.0f} s")
            time.sleep(0.1)
    finally:
        ends.close()


def run_worker_stage(
    s: Settings,
    key: str,
    label: str,
    backlog: Sequence[tuple[bytes, bytes]],
    requests: Mapping[str, dict[str, Any]],
    work: Path,
    logs: Path,
    policy: str,
    model_root: Path | None = None,
    closed: bool = False,
    after: Callable[[Settings, WorkerProcess, Figure], None] | None = None,
) -> Figure:
    """One worker subprocess: fill once ready, drain, measure; `after` runs with it still up."""
    from app.kafka.topics import ensure_topics
    from app.models.serving.registry import promote

    ensure_topics(s)
    extra = {"AUTHPILOT_ROUTING_POLICY": policy}
    if model_root is not None:
        extra["AUTHPILOT_MODEL_DIR"] = str(model_root)
        promote(s, "router", "v1", "champion")
    else:
        extra["AUTHPILOT_MODEL_DIR"] = str(work / "no-models")
    env = process_env(s, work / key, extra)
    print(f"  [{key}] starting the worker (log {logs / f'{key}.log'})", flush=True)
    n = len(backlog)
    with WorkerProcess(env, logs / f"{key}.log") as w:
        if model_root is not None:
            deadline = time.monotonic() + 60
            probe = 'authpilot_model_info{name="router",role="champion",version="v1"}'
            while w.metric(probe) != 1.0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"model not loaded in 60 s\n{w.log_tail()}")
                time.sleep(0.2)
        feeder = OutcomeFeeder(s, requests, seed=5).start() if closed else None
        try:
            fill(s, backlog)
            watch(s, n, key, lambda: w.running)
            if feeder is None:
                msgs = read_all(s, s.topic_decisions, n)
                note = ""
                if model_root is not None:
                    dec = Codec(s).decision.decode
                    scored = sum(dec(v)["model_version"] is not None for _, v in msgs)
                    note = f"{scored / len(msgs):.0%} of decisions scored by the model"
                fig = Figure(key, label, n, span_seconds([t for t, _ in msgs]), note=note)
            else:
                done = wait_drained(s, w, feeder, n)
                assert feeder.first_ms is not None
                note = "one outcome per request, fed as its decision arrives"
                fig = Figure(key, label, n, done - feeder.first_ms / 1000, "payments/s", note)
        finally:
            if feeder is not None:
                feeder.stop()
        if after is not None:
            after(s, w, fig)
    return fig


# --- the run -------------------------------------------------------------------------------


def run(
    base: Settings,
    n: int,
    out: Path,
    latency_seconds: float,
    model_cache: Path,
    command: str,
    only: Sequence[str] = STAGES,
) -> tuple[list[Figure], list[LatencyRow]]:
    from app.bench.echo import TunedEcho
    from app.kafka.topics import ensure_topics

    tag = time.strftime("%H%M%S") + f"{os.getpid() % 1000:03d}"
    work = Path(f"var/bench/capacity/work-{tag}").resolve()
    logs = out / "logs"
    world = SampleTraffic(3)
    now = int(time.time() * 1000)
    reqs = [world.next_request(now) for _ in range(n)]
    enc = Codec(base).request.encode
    backlog = [(r["card_fingerprint"].encode(), enc(r)) for r in reqs]
    by_id = {r["request_id"]: r for r in reqs}
    figures: list[Figure] = []
    latency: list[LatencyRow] = []

    def step(title: str) -> None:
        print(f"== {title}", flush=True)

    def show(f: Figure) -> None:
        figures.append(f)
        print(f"   {f.key}: {f.rate:,.0f} {f.unit} over {f.seconds:.2f} s {f.note}", flush=True)

    def measure_latency(s: Settings, w: WorkerProcess, closed: Figure) -> None:
        for frac, rate in zip(FRACTIONS, paced_rates(closed.rate), strict=True):
            step(f"latency at {frac:.0%} of closed-loop capacity: {rate:.0f} req/s, worker")
            pt = paced_run(s, rate, latency_seconds, outcomes=True)
            print(
                f"   worker {pt.decided}/{pt.sent} p50 {pt.p50_ms:.2f} ms p99 {pt.p99_ms:.2f} ms",
                flush=True,
            )
            latency.append(LatencyRow(frac, pt, pt))

    try:
        if "python" in only:
            step(f"python loop, {n} requests")
            show(run_python(stage_settings(base, tag, "python"), backlog))
        step("bare Faust agent, the worker's settings")  # the base: always measured
        show(run_bare_faust(stage_settings(base, tag, "faust"), backlog, "faust", work, logs))
        if "faust-before" in only:
            step("bare Faust agent, the worker's settings before they were measured")
            show(run_bare_faust(stage_settings(base, tag, "faust-before"), backlog,
                                "faust-before", work, logs))  # fmt: skip
        worker_stages = (
            ("sr", "worker, success-rate policy, requests only", "success_rate", False),
            ("ev", "worker, EV with a compiled model, requests only", "expected_value", False),
            ("closed", "worker, requests + outcomes (closed loop, success-rate policy)",
             "success_rate", True),
        )  # fmt: skip
        for key, label, policy, closed in worker_stages:
            if key not in only:
                continue
            step(label)
            show(
                run_worker_stage(
                    stage_settings(base, tag, key),
                    key,
                    label,
                    backlog,
                    by_id,
                    work,
                    logs,
                    policy,
                    model_root=ensure_model(model_cache) if key == "ev" else None,
                    closed=closed,
                    after=measure_latency if closed else None,
                )
            )
        echo_s = stage_settings(base, tag, "echo")
        ensure_topics(echo_s)
        with TunedEcho(echo_s):
            for i, row in enumerate(latency):
                step(f"latency at {row.fraction:.0%}: {row.worker.offered:.0f} req/s, tuned echo")
                pt = paced_run(echo_s, row.worker.offered, latency_seconds, outcomes=True)
                print(
                    f"   echo {pt.decided}/{pt.sent} p50 {pt.p50_ms:.2f} ms p99 {pt.p99_ms:.2f} ms",
                    flush=True,
                )
                latency[i] = LatencyRow(row.fraction, row.worker, pt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        delete_topics(base, tag)
    return figures, latency


def _reachable(address: str) -> bool:
    """Something accepts connections at host:port (the benchmark would otherwise retry for
    minutes against a broker that is not there)."""
    from app.kafka.local_broker import port_open

    host, _, port = address.strip().rpartition(":")
    return port.isdigit() and port_open(int(port), host or "127.0.0.1", timeout=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.bench.capacity",
                                description=__doc__.split("\n")[0])  # fmt: skip
    add_arguments(p)
    return run_args(p, p.parse_args(argv), argv)


def run_args(p: argparse.ArgumentParser, a: argparse.Namespace, argv: list[str] | None) -> int:
    n = a.requests or (3000 if a.quick else 20000)
    lat_s = a.latency_seconds or (5.0 if a.quick else 20.0)
    base = Settings()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    head = "authpilot " if p.prog.startswith("authpilot") else "python -m app.bench.capacity "
    command = head + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = os.getloadavg()[0]
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    unknown = sorted(set(only) - set(STAGES))
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    if not any(_reachable(b) for b in bootstrap_servers(base).split(",")):
        print(f"no Kafka broker at {bootstrap_servers(base)}: start the bench broker with "
              "`python -m app.cli kafka start` (or set AUTHPILOT_KAFKA_BOOTSTRAP)",
              file=sys.stderr)  # fmt: skip
        return 2
    figures, latency = run(base, n, out, lat_s, a.model_cache.resolve(), command, only)
    meta = {
        "requests": n,
        "latency_seconds": lat_s,
        "bootstrap": bootstrap_servers(base),
        "cpus": os.cpu_count(),
        "load": [load_start, os.getloadavg()[0]],
        "python": platform.python_version(),
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out / "report.md").write_text(render_report(figures, latency, meta))
    (out / "summary.json").write_text(json.dumps(summary(figures, latency, meta), indent=2))
    print(render_report(figures, latency, meta))
    print(f"report: {out / 'report.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
