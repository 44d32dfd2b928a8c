"""Tests on a real Apache Kafka broker set up as docker-compose.yml's (marker ``apache_kafka``).

The broker (tests/support/apache_kafka.py, the session fixture ``apache_kafka`` of
tests/conftest.py) needs Java and Maven. Without them these tests are skipped with the reason;
with ``CI`` set they fail instead, so CI cannot pass without them. ``pytest -m apache_kafka``
runs only them, and the Apache Kafka runs of the suites in tests/system (``any_broker``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.settings import Settings
from tests.conftest import Pki
from tests.support.apache_kafka import ApacheKafka, interpolate
from tests.support.apache_kafka import compose_service as service
from tests.support.harness import Exchange, running_exchange

_HERE = Path(__file__).parent
AGENCIES = ("police", "health", "education", "land")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``apache_kafka`` and ``integration``."""
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.apache_kafka)
            item.add_marker(pytest.mark.integration)


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


def gateway_settings(kafka: ApacheKafka, pki: Pki, folder: Path, **overrides: object) -> Settings:
    """worker-1's compose environment, with this broker, this PKI and a local audit store."""
    env = {k: interpolate(str(v)) for k, v in service("worker-1")["environment"].items()}
    values: dict[str, object] = {k.removeprefix("XGW_").lower(): v for k, v in env.items()}
    values |= {
        "bootstrap_servers": kafka.bootstrap_servers,
        "pki_dir": pki.directory,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "audit_store": f"sqlite:///{folder / 'audit.db'}",
        "audit_key_file": folder / "subject.key",
    }
    return Settings(**(values | overrides))


@contextlib.asynccontextmanager
async def apache_exchange(
    kafka: ApacheKafka, pki: Pki, folder: Path, **overrides: object
) -> AsyncIterator[Exchange]:
    """A worker with compose's gateway settings, and each agency's client as its own user."""
    settings = gateway_settings(kafka, pki, folder, **overrides)

    def principal(agency: str) -> Settings:
        return principal_settings(kafka, agency, pki_dir=pki.directory)

    async with running_exchange(settings, pki, folder, principal) as running:
        yield running
