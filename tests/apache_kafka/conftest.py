"""Tests on a real Apache Kafka broker set up as docker-compose.yml's (marker ``apache_kafka``).

The broker (tests/support/apache_kafka.py) needs Java and Maven. Without them these tests are
skipped with the reason; with ``CI`` set they fail instead, so CI cannot pass without them.
``pytest -m apache_kafka`` runs only them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import Settings
from tests.support.apache_kafka import ApacheKafka, ApacheKafkaError, interpolate, missing_tools
from tests.support.apache_kafka import compose_service as service

_HERE = Path(__file__).parent
AGENCIES = ("police", "health", "education", "land")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``apache_kafka`` and ``integration``."""
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.apache_kafka)
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[ApacheKafka]:
    """One Apache Kafka for the session, with compose's topics, SCRAM users and ACLs."""
    if (why := missing_tools()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Apache Kafka tests are required in CI: {why}")
        pytest.skip(f"Apache Kafka tests need Java and Maven: {why}")
    kafka = ApacheKafka()
    try:
        kafka.start()
        kafka.run_compose_init()
    except ApacheKafkaError as exc:
        kafka.stop()
        pytest.fail(str(exc))
    yield kafka
    kafka.stop()


def password(principal: str) -> str:
    """The principal's password as compose's kafka-init gives it (its LOCAL USE defaults)."""
    return interpolate(str(service("kafka-init")["environment"][f"{principal.upper()}_PASSWORD"]))


def principal_settings(kafka: ApacheKafka, principal: str, **overrides: object) -> Settings:
    """Settings of one principal on the broker, SCRAM-SHA-512 as compose's clients use."""
    values: dict[str, object] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": principal,
        "sasl_password": password(principal),
        "topic_prefix": "xgw",
        "metrics_port": 0,
        "log_format": "json",
    }
    return Settings(**(values | overrides))
