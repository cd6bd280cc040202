"""`authpilot worker` (run the stream worker) and `authpilot promote` (publish a model role)."""

from __future__ import annotations

import argparse
import sys

from app.config import get_settings
from app.models.roles import ROLES


def cmd_worker(args: argparse.Namespace) -> int:
    from app.worker.app import run_worker

    sys.argv = [sys.argv[0]]  # faust.Worker reads argv; ours are already parsed
    run_worker(get_settings())
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Move the registry alias (champion, challenger, retry) to NAME/VERSION, then write the
    control topic; the alias is moved back when the topic write fails. A version not in the
    registry is promoted on the topic alone, with a warning (workers must have its directory)."""
    from app.lifecycle.registry import RegistryError, record_fields, restore_alias, set_alias
    from app.models.serving.registry import promote

    s = get_settings()
    path = s.model_dir / args.name / args.version / "manifest.json"
    reg = before = None
    if not args.no_registry:
        try:
            reg, before = set_alias(s, args.name, args.version, args.role)
        except RegistryError as exc:
            print(f"warning: {exc}; promoting on the control topic only", file=sys.stderr)
    if reg is None and not path.exists():
        print(f"warning: {path} is not on this machine; workers must have it", file=sys.stderr)
    try:
        rec = promote(s, args.name, args.version, args.role,
                      record_fields(reg) if reg is not None else None)  # fmt: skip
    except Exception:
        if reg is not None:
            restore_alias(s, args.name, args.role, before)
        raise
    where = f" and alias @{args.role} (MLflow version {reg.mlflow_version})" if reg else ""
    print(f"promoted {rec['name']}/{rec['version']} as {rec['role']} on {s.topic_control}{where}")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    """Remove the @challenger alias of NAME and tell workers to stop shadowing it."""
    from app.lifecycle.registry import delete_alias
    from app.models.serving.registry import retire

    s = get_settings()
    if not args.no_registry:
        delete_alias(s, args.name, "challenger")
    retire(s, args.name)
    print(f"retired the challenger of {args.name} on {s.topic_control}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("worker", help="run the stream worker").set_defaults(func=cmd_worker)
    pr = sub.add_parser("promote", help="make a compiled model champion, challenger or the "
                        "retry model (one from `authpilot train-retry`)")  # fmt: skip
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("--role", choices=ROLES, default="champion")
    pr.add_argument(
        "--no-registry",
        action="store_true",
        help="write the control topic only, leave the MLflow aliases as they are",
    )
    pr.set_defaults(func=cmd_promote)
    rt = sub.add_parser("retire", help="stop shadowing a model's challenger (alias and topic)")
    rt.add_argument("name")
    rt.add_argument("--no-registry", action="store_true", help="leave the MLflow alias as is")
    rt.set_defaults(func=cmd_retire)
