"""`authpilot demo`: the product in a few minutes on one machine.

A local broker; a champion router and an XGBoost challenger trained on a simulated history
(built on the first run, cached by their inputs after); both promoted through the MLflow
registry (embedded store) and the control topic; a worker running experiment arms (EV with the
champion, the success-rate router, the best-single-route holdout) with the challenger in
shadow and the drift monitor on; closed-loop simulated traffic through a quiet phase, an
acquirer outage and an issuer shift (app/data/scenarios/demo_story.json); a live view; and a
report with plots under var/demo/. Every run gets its own topics, consumer group and state,
so runs never see each other's records. Client library log lines go to var/demo/clients.log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.contracts.vocab import DAY_MS
from app.demo.stats import DemoStats, phases_in

ARMS = {  # --arms names -> (arm, policy)
    "ev": ("ev", "expected_value"),
    "sr": ("sr", "success_rate"),
    "oracle": ("oracle", "oracle"),
}


@dataclass(frozen=True)
class DemoOptions:
    rate: float = 60.0
    duration: float = 180.0
    scenario: str = "demo_story"
    no_model: bool = False
    arms: tuple[str, ...] = ("ev", "sr")
    holdout_pct: int = 10
    out: Path = Path("var/demo")
    history_attempts: int = 60_000
    seed: int = 7
    live: bool = True  # False: one plain line every 5 s (CI logs, pipes)


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _models(o: DemoOptions, s: Settings, history_days: float) -> tuple[Path, Any] | None:
    """(models root, Prepared) with evaluate/v1 (LightGBM champion) and evaluate/v2 (XGBoost
    challenger) compiled there; cached by app.evaluation.prepare's fingerprint."""
    from app.evaluation.prepare import prepare
    from app.models.training.compile import compile_from_train_dir
    from app.models.training.train import run as train

    p = prepare(o.scenario, o.out / "cache", history_days, o.history_attempts, 1, say=_say)
    root = p.model_dir.parents[2]
    v2 = root / "models" / p.model_dir.parent.name / "v2"
    if not (v2 / "manifest.json").exists():
        _say("challenger: XGBoost on the same matrix")
        train(root / "train.parquet", root / "train-v2", p.model_dir.parent.name, "v2",
              trainer="xgboost", rounds=400)  # fmt: skip
        compile_from_train_dir(root / "train-v2", root / "models", matrix=root / "train.parquet")
    return root / "models", p


def _side_consumer(s: Settings, st: DemoStats, stop: threading.Event, sim: Any,
                   logger: logging.Logger) -> None:  # fmt: skip
    """Alerts and shadow decisions into the stats, from the topics' end when the demo starts."""
    from confluent_kafka import Consumer

    from app.contracts.codec import Codec
    from app.kafka.connection import confluent_config

    codec = Codec(s)
    alert, decision = codec.serde("Alert"), codec.decision
    c = Consumer({**confluent_config(s), "group.id": f"demo-view-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "logger": logger})  # fmt: skip
    c.subscribe([s.topic_alerts, s.topic_shadow])
    try:
        while not stop.is_set():
            for m in c.consume(200, timeout=0.2):
                if m.error() or m.value() is None:
                    continue
                try:
                    if m.topic() == s.topic_alerts:
                        a = alert.decode(m.value())
                        a["_sim"] = time.strftime("%d %H:%M", time.gmtime(a["event_time"] / 1000))
                        st.alert(a)
                    else:
                        st.shadow(decision.decode(m.value()))
                except ValueError:
                    continue
    finally:
        c.close()


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(o: DemoOptions, s: Settings) -> Path:
    from app.cli.broker import ensure_kafka
    from app.demo.report import write_report
    from app.harness.loadgen import LoadGenerator
    from app.harness.process import running_worker
    from app.harness.simulated import SimulatedTraffic
    from app.kafka.topics import ensure_topics
    from app.sim import load_world

    t_start = time.monotonic()
    o.out.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("authpilot.demo.clients")
    logger.propagate = False
    logger.addHandler(logging.FileHandler(o.out / "clients.log"))
    world = load_world(o.scenario)
    starts = [e.start_day for e in world.events] or [world.days / 2]
    ends = [d for e in world.events if math.isfinite(d := getattr(e, "end_day", e.start_day))]
    start_day = min(starts) - 0.12  # a quiet phase first
    end_day = max(ends + starts) + 0.3  # an issuer shift has no end: its start
    speedup = (end_day - start_day) * DAY_MS / 1000 / o.duration
    _say(f"scenario {o.scenario}: simulated days {start_day:.2f}-{end_day:.2f} in "
         f"{o.duration:.0f} s ({speedup:,.0f}x)")  # fmt: skip
    ensure_kafka(s)
    run_id = f"demo{time.strftime('%H%M%S')}{uuid.uuid4().hex[:4]}"
    topics = {f"topic_{k}": f"{run_id}.{k}" for k in ("requests", "outcomes", "decisions",
              "retry_decisions", "shadow", "alerts", "control", "dead_letter")}  # fmt: skip
    env = {f"AUTHPILOT_{k.upper()}": v for k, v in topics.items()}
    arms = [ARMS[a] for a in o.arms]
    share = (100 - o.holdout_pct) // len(arms)
    arm_cfg = [{"name": n, "pct": share + (100 - o.holdout_pct - share * len(arms) if i == 0
                                          else 0), "policy": p}
               for i, (n, p) in enumerate(arms)]  # fmt: skip
    env.update({"AUTHPILOT_APP_ID": run_id, "AUTHPILOT_EXPERIMENT_ARMS": json.dumps(arm_cfg),
                "AUTHPILOT_EXPERIMENT_HOLDOUT_PCT": str(o.holdout_pct),
                "AUTHPILOT_DRIFT_MONITOR": "true",
                "AUTHPILOT_EVENT_TIME_STREAM_SPEED": f"{speedup:.0f}"})  # fmt: skip
    if "oracle" in o.arms:
        env["AUTHPILOT_ORACLE_SCENARIO"] = o.scenario
    facts: dict[str, Any] = {"scenario": f"{o.scenario}: {world.spec.get('description', '')}",
                             "traffic": f"{o.rate:g} payments/s for {o.duration:g} s, "
                                        f"{speedup:,.0f}x simulated time",
                             "arms": ", ".join(f"{a['name']} {a['pct']}% ({a['policy']})"
                                               for a in arm_cfg)
                             + f", holdout {o.holdout_pct}% (best_single_route)"}  # fmt: skip
    prep = None
    if not o.no_model:
        got = _models(o, s, start_day - 0.05)
        assert got is not None
        root, prep = got
        env["AUTHPILOT_MODEL_DIR"] = str(root.resolve())
        # one MLflow store per history: a version string names one artifact in a registry
        env["AUTHPILOT_MLFLOW_DIR"] = str((root.parent / "mlflow").resolve())
        env["AUTHPILOT_BEST_ROUTES"] = json.dumps(prep.best_routes)
    with _env(env):
        s2 = Settings()
    ensure_topics(s2)
    stats = DemoStats(s2.ev_margin_bps, "holdout", phase_of=phases_in(_events(world)),
                      watch=_watched(world))  # fmt: skip
    data_dir = Path(f"var/{run_id}")
    with _env(env), running_worker(s2, run_id) as w:
        if prep is not None:
            _promote(s2, prep.model_dir.parent.name, w)
            from app.lifecycle.tracking import store_of

            facts["models"] = (f"champion {prep.model_dir.parent.name}/v1 (LightGBM), challenger "
                               "v2 (XGBoost) in shadow, via the MLflow registry "
                               f"(`{store_of(s2).ui_command()}`)")  # fmt: skip
        else:
            facts["models"] = "none (--no-model): every arm falls back to success-rate routing"
        facts["time to first live view"] = f"{time.monotonic() - t_start:.0f} s from the command"
        traffic = SimulatedTraffic(o.scenario, seed=o.seed, speedup=speedup, start_day=start_day)
        stop = threading.Event()
        side = threading.Thread(target=_side_consumer, args=(s2, stats, stop, traffic, logger),
                                daemon=True)  # fmt: skip
        side.start()
        gen = LoadGenerator(s2, traffic, o.rate, o.duration, on_outcome=stats.outcome,
                            client_logger=logger)  # fmt: skip
        result: dict[str, Any] = {}
        th = threading.Thread(target=lambda: result.setdefault("st", gen.run(show=False)),
                              daemon=True)  # fmt: skip
        th.start()
        frame = _show(stats, th, traffic, world, o, facts)
        th.join()
        time.sleep(3)  # the last alerts and shadow decisions
        stop.set()
        side.join(5)
    _save_view(frame(), o.out / "view.txt")
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    events = _events(world)
    title = f"authpilot demo: {o.scenario}"
    path = write_report(o.out, stats, title, events, list(world.route_ids), facts,
                        watch=stats.watch)  # fmt: skip
    return path


def _watched(world: Any) -> tuple[str, str] | None:
    """(country, route) of the story's first country-wide issuer shift toward one route: the
    segment whose move to that route the demo counts."""
    from app.sim.world import IssuerShift

    for e in world.events:
        if isinstance(e, IssuerShift) and e.issuer_country and e.route_id:
            return e.issuer_country, e.route_id
    return None


def _events(world: Any) -> list[tuple[str, int, int | None]]:
    out = []
    for e in world.events:
        t0 = world.start_ms + int(e.start_day * DAY_MS)
        end = getattr(e, "end_day", None)
        end = end if end is not None and math.isfinite(end) else None
        label = f"{type(e).__name__} {getattr(e, 'route_id', '') or ''}".strip()
        out.append((label, t0, world.start_ms + int(end * DAY_MS) if end else None))
    return out


def _promote(s: Settings, name: str, w: Any) -> None:
    """v1 champion and v2 challenger: registry aliases + control topic, then wait to serve."""
    from app.lifecycle import registry
    from app.models.serving.registry import promote

    for version, role in (("v1", "champion"), ("v2", "challenger")):
        reg = registry.register(s, s.model_dir / name / version)
        registry.set_alias(s, name, version, role)
        promote(s, name, version, role, registry.record_fields(reg))
    label = f'authpilot_model_info{{name="{name}",role="champion",version="v1"}}'
    deadline = time.monotonic() + 60
    while w.metric(label) != 1.0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not serve {name}/v1 in 60 s: {w.log_tail()}")
        time.sleep(0.5)


def _save_view(frame: Any, path: Path) -> None:
    """The final live view as plain text (what the terminal showed last), beside the report."""
    import io

    from rich.console import Console

    console = Console(record=True, width=170, file=io.StringIO(), color_system=None)
    console.print(frame)
    path.write_text(console.export_text())


def _show(stats: DemoStats, th: threading.Thread, traffic: Any, world: Any, o: DemoOptions,
          facts: dict[str, Any]) -> Callable[[], Any]:  # fmt: skip
    """Run the live view (or the plain lines) until the traffic thread ends; the frame maker."""
    from app.demo.view import render

    header = f"authpilot demo: {o.scenario}  |  " + facts["arms"]
    routes = list(world.route_ids)
    phase_of = stats.phase_of

    def frame() -> Any:
        now = traffic.sim_time(int(time.time() * 1000))
        return render(stats, header, time.strftime("day %d %H:%M", time.gmtime(now / 1000)),
                      phase_of(now), routes)  # fmt: skip

    if o.live and sys.stdout.isatty():
        from rich.live import Live

        with Live(frame(), refresh_per_second=2, screen=False) as live:
            while th.is_alive():
                time.sleep(1.0)
                live.update(frame())
            live.update(frame())
        return frame
    last = 0.0
    while th.is_alive():
        time.sleep(0.5)
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            rate, _, p99 = stats.window()
            arms = stats.snapshot()
            now = traffic.sim_time(int(time.time() * 1000))
            current = dict(stats.phase_snapshot()).get(phase_of(now), {})
            parts = [f"{k} {a.approved / a.payments:.1%} (this phase "
                     f"{current[k].approved / current[k].payments:.1%})"
                     for k, a in sorted(arms.items())
                     if a.payments and k in current and current[k].payments]  # fmt: skip
            print(f"[demo] {time.strftime('%d %H:%M', time.gmtime(now / 1000))} "
                  f"{phase_of(now)}: {rate:,.0f}/s p99 {p99 / 1000:.0f} ms; "
                  f"{'; '.join(parts)}; alerts {len(stats.alerts)}", flush=True)  # fmt: skip
    return frame
