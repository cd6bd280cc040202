"""Settings -> Kafka client configuration: one mapping for both clients authpilot runs.

The worker talks to Kafka through Faust (aiokafka); the loadgen, CLI, admin, model registry and
tests through confluent-kafka (librdkafka). The two name the same security settings
differently, so both are derived here from one resolved `KafkaSecurity`: a cluster that
needs SASL_SSL cannot then work for the loadgen and fail for the worker.

The protocol alone decides what is used: SASL settings only under SASL_*, the CA file only
under *SSL. SASL needs an explicit mechanism because the two clients' defaults differ
(librdkafka GSSAPI, Faust PLAIN).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.config import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


@dataclass(frozen=True)
class KafkaSecurity:
    """The security settings that apply under `protocol`, nothing else."""

    protocol: str
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @classmethod
    def from_settings(cls, s: Settings) -> KafkaSecurity:
        proto = s.kafka_security_protocol
        sasl, tls = proto.startswith("SASL_"), proto.endswith("SSL")
        if sasl and not s.kafka_sasl_mechanism:
            raise ValueError(
                f"AUTHPILOT_KAFKA_SECURITY_PROTOCOL={proto} needs AUTHPILOT_KAFKA_SASL_MECHANISM "
                "(e.g. SCRAM-SHA-512 or PLAIN)"
            )
        return cls(
            protocol=proto,
            sasl_mechanism=s.kafka_sasl_mechanism if sasl else None,
            sasl_username=s.kafka_sasl_username if sasl else None,
            sasl_password=s.kafka_sasl_password if sasl else None,
            ssl_cafile=s.kafka_ssl_cafile if tls else None,
        )


def bootstrap_servers(s: Settings) -> str:
    """Where Kafka is: the configured cluster or the embedded local broker."""
    return s.kafka_bootstrap or f"127.0.0.1:{s.kafka_port}"


def confluent_config(s: Settings) -> dict[str, str]:
    """librdkafka connection settings (security included) for producers, consumers, admin."""
    sec = KafkaSecurity.from_settings(s)
    conf = {
        "bootstrap.servers": bootstrap_servers(s),
        "security.protocol": sec.protocol,
    }
    if sec.sasl:
        conf["sasl.mechanism"] = sec.sasl_mechanism or ""
        conf["sasl.username"] = sec.sasl_username or ""
        conf["sasl.password"] = sec.sasl_password or ""
    if sec.ssl_cafile:
        conf["ssl.ca.location"] = sec.ssl_cafile
    return conf


def worker_client_config(s: Settings) -> dict[str, Any]:
    """confluent_config for the worker's own librdkafka clients (control watcher, broker probe,
    decision read-back): their logs go through Python logging ("librdkafka"), where the worker
    rate-limits repeats (app.monitoring.logs), instead of raw stderr; measured during a broker
    outage, ~20 "Connect failed" lines a second."""
    import logging

    return {**confluent_config(s), "logger": logging.getLogger("librdkafka")}


def faust_broker(s: Settings) -> str:
    """The Faust broker URL; Faust splits a comma-separated host list itself."""
    return f"kafka://{bootstrap_servers(s)}"


def faust_credentials(s: Settings) -> CredentialsT | None:
    """Faust's broker_credentials: None for PLAINTEXT, SSL and/or SASL otherwise."""
    # Imported here: librdkafka users (CLI, loadgen) need not pay Faust's import (~0.4 s).
    from faust.auth import SASLCredentials, SSLCredentials

    sec = KafkaSecurity.from_settings(s)
    ctx = ssl.create_default_context(cafile=sec.ssl_cafile) if sec.tls else None
    if sec.sasl:
        # An ssl_context makes Faust's SASLCredentials SASL_SSL, none SASL_PLAINTEXT.
        return SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return SSLCredentials(ctx)
    return None
