"""`authpilot train` and `authpilot compile`: a training matrix to a calibrated model
(app.models.training.train), a trained model to a verified shared library (.compile)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.config import get_settings
from app.models.training.frameworks import FRAMEWORKS


def cmd_train(a: argparse.Namespace) -> int:
    from app.models.training.train import run

    run(a.matrix, a.out, a.name, a.version, a.decline_weight, a.champion, trainer=a.trainer,
        rounds=a.rounds)  # fmt: skip
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
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train, calibrate and evaluate a model")
    t.add_argument("--matrix", type=Path, required=True, help="from `authpilot features build`")
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
    c.set_defaults(func=cmd_compile)
