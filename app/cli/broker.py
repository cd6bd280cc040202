"""`authpilot kafka start|stop|status|reset|install` and `authpilot topics`: the broker side."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.config import Settings, get_settings
from app.kafka.connection import bootstrap_servers

if TYPE_CHECKING:
    from app.kafka.local_broker import LocalBroker


def _broker(s: Settings) -> LocalBroker:
    from app.kafka.local_broker import LocalBroker

    return LocalBroker.from_settings(s)


def ensure_kafka(s: Settings) -> str:
    """The bootstrap address, starting the embedded broker when no cluster is configured."""
    if not s.kafka_bootstrap:
        from app.kafka import local_broker as kafka_local

        kafka_local.start(_broker(s))
    return bootstrap_servers(s)


def cmd_kafka(args: argparse.Namespace) -> int:
    from app.kafka import local_broker as kafka_local

    s = get_settings()
    if s.kafka_bootstrap:
        print(f"AUTHPILOT_KAFKA_BOOTSTRAP={s.kafka_bootstrap}: using that cluster, no local broker")
        return 0
    b = _broker(s)
    if args.action == "start":
        kafka_local.start(b)
    elif args.action == "stop":
        kafka_local.stop(b)
    elif args.action == "reset":
        kafka_local.reset(b)
    elif args.action == "install":
        kafka_local.install(b)
    print(kafka_local.status(b))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from app.kafka.topics import ensure_topics

    s = get_settings()
    ensure_kafka(s)
    created = ensure_topics(s)
    print("created: " + (", ".join(created) if created else "nothing (all exist)"))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kafka", help="the embedded local Kafka broker")
    k.add_argument("action", choices=["start", "stop", "status", "reset", "install"])
    k.set_defaults(func=cmd_kafka)
    sub.add_parser("topics", help="create authpilot's topics").set_defaults(func=cmd_topics)
