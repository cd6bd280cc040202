"""One Settings -> both Kafka clients: librdkafka's dict and Faust's credentials must agree."""

from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from app.config import Settings
from app.kafka.connection import (
    bootstrap_servers,
    confluent_config,
    faust_broker,
    faust_credentials,
)

CA = str(Path(__file__).with_name("test-ca.pem"))  # self-signed, CN "authpilot test CA"
SASL = {"kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": "svc",
        "kafka_sasl_password": "pw"}  # fmt: skip


def settings(protocol: str, **kw: object) -> Settings:
    return Settings(kafka_bootstrap="k1:9093,k2:9093", kafka_security_protocol=protocol, **kw)


def aiokafka_kwargs(s: Settings) -> dict:
    """What Faust hands aiokafka for these credentials (Faust's own translation)."""
    return credentials_to_aiokafka_auth(faust_credentials(s))


def ca_names(ctx) -> list[str]:
    """Common names of the CA certificates an SSL context trusts."""
    certs = ctx.get_ca_certs()
    return [v for c in certs for rdn in c["subject"] for k, v in rdn if k == "commonName"]


def test_bootstrap_is_the_cluster_or_the_local_broker():
    assert bootstrap_servers(Settings(kafka_bootstrap="k1:9093,k2:9093")) == "k1:9093,k2:9093"
    assert bootstrap_servers(Settings(kafka_bootstrap=None, kafka_port=29592)) == "127.0.0.1:29592"
    assert faust_broker(Settings(kafka_bootstrap="k1:9093,k2:9093")) == "kafka://k1:9093,k2:9093"


def test_plaintext():
    s = settings("PLAINTEXT", **SASL, kafka_ssl_cafile=CA)  # ignored under PLAINTEXT
    assert confluent_config(s) == {"bootstrap.servers": "k1:9093,k2:9093",
                                   "security.protocol": "PLAINTEXT"}  # fmt: skip
    assert faust_credentials(s) is None
    assert aiokafka_kwargs(s) == {"security_protocol": "PLAINTEXT"}


def test_ssl():
    s = settings("SSL", **SASL, kafka_ssl_cafile=CA)  # SASL settings ignored under SSL
    assert confluent_config(s) == {"bootstrap.servers": "k1:9093,k2:9093",
                                   "security.protocol": "SSL", "ssl.ca.location": CA}  # fmt: skip
    creds = faust_credentials(s)
    assert isinstance(creds, SSLCredentials)
    assert ca_names(creds.context) == ["authpilot test CA"]
    kw = credentials_to_aiokafka_auth(creds)
    assert kw == {"security_protocol": "SSL", "ssl_context": creds.context}


def test_ssl_without_cafile_uses_the_system_trust_store():
    s = settings("SSL")
    assert "ssl.ca.location" not in confluent_config(s)
    assert isinstance(faust_credentials(s), SSLCredentials)


def test_sasl_plaintext():
    s = settings("SASL_PLAINTEXT", **SASL, kafka_ssl_cafile=CA)  # no TLS: CA ignored
    assert confluent_config(s) == {
        "bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": "pw",
    }  # fmt: skip
    creds = faust_credentials(s)
    assert isinstance(creds, SASLCredentials) and creds.ssl_context is None
    assert aiokafka_kwargs(s) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": "pw", "ssl_context": None,
    }  # fmt: skip


def test_sasl_ssl():
    s = settings("SASL_SSL", **SASL, kafka_ssl_cafile=CA)
    assert confluent_config(s) == {
        "bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": "pw",
        "ssl.ca.location": CA,
    }  # fmt: skip
    creds = faust_credentials(s)
    assert isinstance(creds, SASLCredentials)
    assert ca_names(creds.ssl_context) == ["authpilot test CA"]
    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc", "sasl_plain_password": "pw", "ssl_context": creds.ssl_context,
    }  # fmt: skip


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_both_clients_get_the_same_protocol(protocol):
    s = settings(protocol, **SASL)
    assert aiokafka_kwargs(s)["security_protocol"] == confluent_config(s)["security.protocol"]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_mechanism(protocol):
    # librdkafka would default to GSSAPI, Faust to PLAIN: refuse rather than guess.
    s = settings(protocol, kafka_sasl_username="svc", kafka_sasl_password="pw")
    with pytest.raises(ValueError, match="AUTHPILOT_KAFKA_SASL_MECHANISM"):
        confluent_config(s)
    with pytest.raises(ValueError, match="AUTHPILOT_KAFKA_SASL_MECHANISM"):
        faust_credentials(s)
