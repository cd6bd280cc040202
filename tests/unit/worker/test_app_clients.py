"""The Kafka clients the worker's Faust app builds carry the settings the guarantees rest on."""

import asyncio

from app.config import Settings
from app.worker.app import build_app


def test_the_worker_producer_is_idempotent_with_acks_all():
    # A resent batch after a broker SIGKILL is a second RetryDecision unless the broker can
    # recognise it by the producer's sequence numbers (app.worker.app.idempotent_producer).
    app, _ = build_app(Settings(kafka_bootstrap="127.0.0.1:1"))

    async def built() -> object:
        prod = app.producer._new_producer()
        try:
            return prod._txn_manager
        finally:
            await prod.stop()

    txn = asyncio.run(built())
    assert txn is not None  # aiokafka keeps a transaction manager only for idempotent producers
    assert app.producer._settings_default()["acks"] in (-1, "all")
