"""The embedded broker is idempotent and really serves both clients authpilot uses."""

import pytest

from app.config import Settings
from app.kafka import local_broker as kafka_local
from tests.conftest import TEST_KAFKA_PORT

pytestmark = pytest.mark.kafka


def test_start_is_idempotent_and_status_reports_it(kafka_bootstrap):
    broker = kafka_local.LocalBroker.from_settings(
        Settings(kafka_port=TEST_KAFKA_PORT, kafka_controller_port=TEST_KAFKA_PORT + 1)
    )
    pid = kafka_local.running_pid(broker)
    assert pid is not None
    assert kafka_local.start(broker) == kafka_bootstrap
    assert kafka_local.running_pid(broker) == pid, "a second start must not start a second broker"
    assert kafka_local.status(broker).startswith("running: Kafka 4.1.1")
    assert (broker.libs / ".complete").exists()


def test_aiokafka_and_confluent_kafka_both_talk_to_it(kafka_bootstrap):
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic("compat-check", 1, 1)])["compat-check"].result()
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    p.produce("compat-check", value=b"from-confluent")
    assert p.flush(10) == 0

    async def roundtrip() -> list[bytes]:
        prod = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await prod.start()
        await prod.send_and_wait("compat-check", b"from-aiokafka")
        await prod.stop()
        cons = AIOKafkaConsumer("compat-check", bootstrap_servers=kafka_bootstrap,
                                group_id="compat", auto_offset_reset="earliest")  # fmt: skip
        await cons.start()
        got = await cons.getmany(timeout_ms=10000)
        await cons.commit()
        await cons.stop()
        return [m.value for msgs in got.values() for m in msgs]

    values = asyncio.run(roundtrip())
    assert values == [b"from-confluent", b"from-aiokafka"]


def test_the_readiness_probe_reaches_the_broker(kafka_bootstrap):
    import asyncio

    from app.config import Settings
    from app.kafka.probe import BrokerProbe

    probe = BrokerProbe(Settings(kafka_bootstrap=kafka_bootstrap))
    probe.checked_at = 0.0  # stale: fresh() must ask again
    assert asyncio.run(probe.fresh()) is True
    assert probe.error is None and probe.checked_at > 0.0
    # The timer's probe turns a stale "unreachable" back once the broker answers.
    probe.reachable = False
    assert probe.check() is True and probe.reachable
