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
    from app.models.serving.registry import promote

    s = get_settings()
    path = s.model_dir / args.name / args.version / "manifest.json"
    if not path.exists():
        print(f"warning: {path} is not on this machine; workers must have it", file=sys.stderr)
    rec = promote(s, args.name, args.version, args.role)
    print(f"promoted {rec['name']}/{rec['version']} as {rec['role']} on {s.topic_control}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("worker", help="run the stream worker").set_defaults(func=cmd_worker)
    pr = sub.add_parser("promote", help="make a compiled model champion, challenger or the "
                        "retry model (one from `authpilot train-retry`)")  # fmt: skip
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("--role", choices=ROLES, default="champion")
    pr.set_defaults(func=cmd_promote)
