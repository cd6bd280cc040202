"""`authpilot models` (the registry: versions, aliases, metrics, what workers serve) and
`authpilot retrain` (the gated pipeline, app.lifecycle.pipeline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.config import get_settings


def cmd_models(a: argparse.Namespace) -> int:
    """Registered versions with aliases and test metrics; then the control topic's promotions
    and, per worker, what it reported serving (app.lifecycle.status)."""
    from app.lifecycle import registry, tracking

    s = get_settings()
    rows = registry.listing(s)
    print(f"registry: {tracking.store_of(s).describe()}")
    if not rows:
        print("  no registered models (authpilot compile / train-retry register them)")
    else:
        print(f"  {'model':<8} {'version':<22} {'mlflow':>6}  {'aliases':<22} "
              f"{'log loss':>8} {'ECE':>7} {'AUC':>6}")  # fmt: skip
        for r in rows:
            m = r.metrics
            print(f"  {r.name:<8} {r.version:<22} {r.mlflow_version:>6}  "
                  f"{','.join('@' + x for x in r.aliases) or '-':<22} "
                  f"{_num(m.get('log_loss'), 4):>8} {_num(m.get('ece'), 4):>7} "
                  f"{_num(m.get('auc'), 3):>6}")  # fmt: skip
    if a.no_kafka:
        return 0
    from app.lifecycle.status import read_serving

    try:
        promoted, serving = read_serving(s, timeout=a.timeout)
    except RuntimeError as exc:
        print(f"control topic: {exc}", file=sys.stderr)
        return 2
    print(f"promoted on {s.topic_control}:")
    for key, rec in sorted(promoted.items()):
        print(f"  {key:<20} {rec['name']}/{rec['version']}")
    print("workers (last report):")
    if not serving:
        print("  none reported")
    for worker, st in sorted(serving.items()):
        models = ", ".join(f"{role} {label}" for role, label in sorted(st.models.items()))
        print(f"  {worker:<28} {models or 'no model (success-rate fallback)'}  "
              f"({st.age_s:.0f} s ago)")  # fmt: skip
    return 0


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def cmd_retrain(a: argparse.Namespace) -> int:
    from app.lifecycle.gates import Gates
    from app.lifecycle.pipeline import PipelineError, RetrainOptions, retrain

    trainer, rounds = a.trainer, a.rounds
    params: dict[str, Any] = {}
    if a.sweep is not None:
        from app.models.frontier.sweep import recommended_training

        try:
            trainer, rounds, params = recommended_training(a.sweep)
        except ValueError as exc:
            print(f"authpilot retrain: {exc}", file=sys.stderr)
            return 2
    opts = RetrainOptions(
        log=a.log,
        from_topics=a.from_topics,
        history=tuple(a.history),
        work=a.work,
        name=a.name,
        trainer=trainer,
        rounds=rounds,
        params=params,
        shadow_window_s=a.shadow_window_s,
        stage=a.stage,
        promote=not a.no_promote,
        gates=Gates.from_file(a.gates) if a.gates else Gates(),
        if_alert=a.if_alert,
    )
    try:
        result = retrain(get_settings(), opts)
    except PipelineError as exc:
        print(f"authpilot retrain: {exc}", file=sys.stderr)
        return 2
    print(result.summary)
    return 0 if result.ok else 4


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("models", help="registered model versions, aliases, what workers serve")
    m.add_argument("--no-kafka", action="store_true", help="the registry only")
    m.add_argument("--timeout", type=float, default=15.0, help="seconds to reach Kafka")
    m.set_defaults(func=cmd_models)

    r = sub.add_parser(
        "retrain",
        help="export -> train -> gate -> register -> challenger -> shadow gate -> champion",
        description="The retraining pipeline (app.lifecycle.pipeline). Exit 0: every step "
        "that ran passed; 4: a gate refused (the report says why); 2: it could not run.",
    )
    src = r.add_mutually_exclusive_group()
    src.add_argument("--log", type=Path, help="an event log to train on (default: export)")
    src.add_argument(
        "--from-topics",
        action="store_true",
        help="export the worker's own history from Kafka first (the default)",
    )
    r.add_argument(
        "--history",
        type=Path,
        action="append",
        default=[],
        help="another event log trained on together with --log or the export (repeatable): "
        "e.g. the history backfilled before the workers logged their own",
    )
    r.add_argument("--work", type=Path, default=Path("var/retrain"),
                   help="export, matrices, trained and compiled models")  # fmt: skip
    r.add_argument("--name", default="router")
    r.add_argument("--trainer", default="lightgbm", choices=("lightgbm", "xgboost"))
    r.add_argument("--rounds", type=int, default=1000)
    r.add_argument("--sweep", type=Path,
                   help="train the configuration `authpilot sweep` recommended (its sweep.json) "
                   "instead of --trainer/--rounds")  # fmt: skip
    r.add_argument("--gates", type=Path, help="JSON of gate thresholds (app.lifecycle.gates)")
    r.add_argument(
        "--stage",
        choices=("auto", "train", "shadow"),
        default="auto",
        help="auto: judge a challenger whose shadow window is over, else train a new one; "
        "train: always train; shadow: only judge the current challenger",
    )
    r.add_argument("--shadow-window-s", type=float, default=3600.0,
                   help="time a challenger shadows before the second gate")  # fmt: skip
    r.add_argument(
        "--no-promote",
        action="store_true",
        help="register and report, but move no alias and write no control record",
    )
    r.add_argument(
        "--if-alert",
        action="store_true",
        help="run only if a model-fallback or drift alert fired since the last run",
    )
    r.set_defaults(func=cmd_retrain)
