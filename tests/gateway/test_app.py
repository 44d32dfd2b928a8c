"""The composition root: Kafka security settings reach faust as they reach the clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from gateway.app import faust_credentials
from gateway.settings import Settings


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("PLAINTEXT", None),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ("SASL_SSL", "PLAIN"),
        ("SSL", None),
    ],
)
def test_worker_and_clients_use_the_same_kafka_security(
    protocol: str, mechanism: str | None
) -> None:
    """The faust worker's security protocol, mechanism and user equal the clients' options."""
    settings = Settings(
        bootstrap_servers="kafka:9093",
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        sasl_username="gateway" if mechanism else None,
        sasl_password="s3cret" if mechanism else None,  # type: ignore[arg-type]
        pki_dir=Path("unused"),
    )
    worker = credentials_to_aiokafka_auth(faust_credentials(settings))
    client = settings.kafka_options()
    for key in (
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    ):
        assert worker.get(key) == client.get(key), key
    assert (worker.get("ssl_context") is None) == (client.get("ssl_context") is None)
