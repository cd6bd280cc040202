"""`authpilot train` and `authpilot compile`: a training matrix to a calibrated model
(app.models.training.train), a trained model to a verified shared library (.compile)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app.config import get_settings
from app.models.training.frameworks import FRAMEWORKS


def cmd_train(a: argparse.Namespace) -> int:
    """Refuse (exit 3) a log that breaks the ingest contract (--log) or a matrix no valid log
    gives (null request features, labels not 0/1), then train."""
    from app.contracts.ingest import EXIT_REFUSED, LogRejected, require_valid_log
    from app.features.quality import check_matrix, quality_paths
    from app.models.training.train import ignored, run

    try:
        names = ignored(a.ignore_features)
    except ValueError as exc:
        print(f"authpilot train: --ignore-features: {exc}", file=sys.stderr)
        return 2
    if a.log is not None:
        if not a.log.is_dir():
            print(f"authpilot train: --log {a.log} is not a directory", file=sys.stderr)
            return 2
        try:
            print(require_valid_log(a.log).summary_line())
        except LogRejected as exc:
            print(f"authpilot train: refused, the log breaks the ingest contract.\n"
                  f"{exc.report.render()}", file=sys.stderr)  # fmt: skip
            return EXIT_REFUSED
    if not a.matrix.is_file():
        print(f"authpilot train: {a.matrix} not found (from `authpilot features build`)",
              file=sys.stderr)  # fmt: skip
        return 2
    problems = check_matrix(a.matrix)
    if problems:
        lines = "\n".join(p.render() for p in problems)
        print(f"authpilot train: refused, {a.matrix} is not a matrix of a valid log.\n{lines}",
              file=sys.stderr)  # fmt: skip
        return EXIT_REFUSED
    summary, _ = quality_paths(a.matrix)
    if a.log is None and summary.is_file():
        log = json.loads(summary.read_text()).get("log")
        print(f"matrix built by `features build` from {log}, checked then ({summary})")
    elif a.log is None:
        print(f"note: no {summary.name} beside the matrix, so its log was not checked by "
              "`features build`; --log DIR checks it now")  # fmt: skip
    run(a.matrix, a.out, a.name, a.version, a.decline_weight, a.champion, trainer=a.trainer,
        rounds=a.rounds, refit_all=a.refit_all, ignore=names)  # fmt: skip
    if not a.no_track:
        from app.lifecycle import tracking

        ref = tracking.log_train_dir(get_settings(), a.out)
        print(f"MLflow run {ref.run_id} in {tracking.store_of(get_settings()).describe()}")
    return 0


def cmd_compile(a: argparse.Namespace) -> int:
    import platform

    from app.models.training.compile import compile_from_train_dir, rebuild

    if a.rebuild is not None:
        try:
            path = rebuild(a.rebuild)
        except Exception as exc:  # reported, not a traceback: this runs in a Docker build
            print(f"rebuild of {a.rebuild} failed: {exc}", file=sys.stderr)
            return 1
        print(f"rebuilt {path.parent} for {platform.machine()}")
        return 0
    try:
        manifest = compile_from_train_dir(
            a.model,
            a.out or get_settings().model_dir,
            matrix=a.matrix,
            name=a.name,
            version=a.version,
            parallel_comp=a.parallel_comp,
            quantize=not a.no_quantize,
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    out = manifest.parent
    print(f"compiled {out.parent.name}/{out.name} -> {out}")
    if not a.no_register:
        from app.lifecycle.registry import RegistryError, register

        run_id = json.loads((a.model / "metrics.json").read_text()).get("mlflow_run_id")
        try:
            reg = register(get_settings(), out, run_id)
        except RegistryError as exc:
            print(f"authpilot compile: {exc}", file=sys.stderr)
            return 2
        print(f"registered {reg.name}/{reg.version} as MLflow model version "
              f"{reg.name} {reg.mlflow_version}")  # fmt: skip
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train, calibrate and evaluate a model")
    t.add_argument("--matrix", type=Path, required=True, help="from `authpilot features build`")
    t.add_argument(
        "--log",
        type=Path,
        default=None,
        help="the event log the matrix came from: checked against the ingest contract first "
        "(exit 3 with a report when it fails)",
    )
    t.add_argument("--out", type=Path, required=True, help="directory for model and report")
    t.add_argument("--name", default="router")
    t.add_argument("--version", default=time.strftime("v%Y%m%d%H%M%S"))
    t.add_argument(
        "--trainer",
        choices=sorted(FRAMEWORKS),
        default="lightgbm",
        help="tree library (default lightgbm); both compile with `authpilot compile`",
    )
    t.add_argument(
        "--decline-weight",
        type=float,
        default=1.0,
        help="sample weight of declined attempts (approvals 1); >1 is cost-sensitive",
    )
    t.add_argument("--rounds", type=int, default=1000, help="boosting rounds before early stopping")
    t.add_argument("--champion", type=Path, help="a previous --out directory to compare with")
    t.add_argument("--refit-all", action="store_true",
                   help="serve a booster refitted on every row with the split's rounds, "
                        "calibrated out of fold (the report's metrics stay the split "
                        "model's)")  # fmt: skip
    t.add_argument("--ignore-features", metavar="NAMES",
                   help="comma-separated features the model is trained blind to, `none` for "
                        "none (default: the aggregate traffic volumes bin_1h_n, bin_24h_n, "
                        "merchant_24h_n, route_1h_n; app.models.training.train.IGNORED_FEATURES "
                        "says why)")  # fmt: skip
    t.add_argument("--no-track", action="store_true",
                   help="do not log the run to MLflow (AUTHPILOT_MLFLOW_TRACKING_URI)")  # fmt: skip
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compile", help="compile a trained model to a shared library")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="an `authpilot train --out` dir")
    src.add_argument(
        "--rebuild",
        type=Path,
        metavar="DIR",
        help="recompile compiled_models/<name>/<version> in place from its portable model",
    )
    c.add_argument("--matrix", type=Path, help="training matrix: warm-up rows and annotation")
    c.add_argument("--name", default=None)
    c.add_argument("--version", default=None)
    c.add_argument("--out", type=Path, default=None, help="default: AUTHPILOT_MODEL_DIR")
    c.add_argument("--parallel-comp", type=int, default=None)
    c.add_argument("--no-quantize", action="store_true")
    c.add_argument("--no-register", action="store_true",
                   help="do not register the compiled model in the MLflow registry")  # fmt: skip
    c.set_defaults(func=cmd_compile)
