"""Shared fixtures: keys, pipeline parts, the real embedded broker, topic and group factories."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import HealthCheck, settings
from psycopg import sql

from gateway.core.pipeline import Pipeline, PipelineConfig
from gateway.core.policy import Policy, load_policy
from gateway.core.replay import ReplayWindow, SeenIds
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.forgery import CertificateAuthority, certificate_authority
from gateway.names import GATEWAY_OWNER, TopicNames
from gateway.settings import DEFAULT_POLICY_FILE
from gateway.trust.ca import ensure_exchange, load_signing_key
from gateway.trust.x509 import X509TrustStore
from gateway.wire.keys import SigningKey
from schemas.common import Address
from schemas.police import ResidentRegistered
from schemas.registry import REGISTRY
from tests.support.apache_kafka import (
    ApacheKafka,
    ApacheKafkaError,
    admin_connection,
    missing_tools,
)

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("default")

AGENCIES = ("police", "health", "education", "land")
# Test certificates are issued an hour before NOW, so every check at NOW is inside their validity.
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Pki:
    """One test exchange's CA, certificates and keys, on disk and loaded."""

    directory: Path
    trust: X509TrustStore
    keys: dict[str, SigningKey]
    ca: CertificateAuthority

    @property
    def gateway(self) -> SigningKey:
        return self.keys[GATEWAY_OWNER]

    def fresh_trust(self) -> X509TrustStore:
        """A trust store of its own, for tests that change the CRL."""
        return X509TrustStore.from_directory(self.directory)


def make_pki(directory: Path) -> Pki:
    """A root CA and certificates for the gateway and the four agencies in ``directory``."""
    ensure_exchange(directory, AGENCIES, now=NOW - timedelta(hours=1))
    keys = {
        owner: load_signing_key(directory, owner, embed=owner == GATEWAY_OWNER)
        for owner in (GATEWAY_OWNER, *AGENCIES)
    }
    trust = X509TrustStore.from_directory(directory)
    return Pki(directory, trust, keys, certificate_authority(directory))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The session's exchange PKI (tests that enrol or revoke make their own)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The shipped policy."""
    return load_policy(DEFAULT_POLICY_FILE, REGISTRY)


@pytest.fixture
def pipeline(pki: Pki, policy: Policy) -> Pipeline:
    """A fresh pipeline (empty replay window) over the default topic names."""
    return make_pipeline(pki, policy)


def make_pipeline(pki: Pki, policy: Policy, replay: SeenIds | None = None) -> Pipeline:
    """A pipeline over the default topic names with its own empty replay window."""
    config = PipelineConfig(
        topics=TopicNames(),
        trust=pki.trust,
        registry=REGISTRY,
        policy=policy,
        gateway_key=pki.gateway,
        max_record_bytes=64 * 1024,
    )
    return Pipeline(
        config, replay if replay is not None else ReplayWindow(timedelta(days=1), 10_000)
    )


def make_resident(full_name: str = "Nguyễn Thị Minh Khai", **changes: object) -> ResidentRegistered:
    """A valid police registration with real diacritics; ``changes`` override fields."""
    fields: dict[str, object] = {
        "personal_id": "079190012345",
        "full_name": full_name,
        "date_of_birth": date(1990, 5, 17),
        "sex": "female",
        "permanent_address": Address(
            street="12 Lê Lợi",
            commune_code="26740",
            commune_name="Phường Sài Gòn",
            province_code="79",
            province_name="Thành phố Hồ Chí Minh",
        ),
        "registered_on": date(2026, 11, 20),
    }
    fields.update(changes)
    return ResidentRegistered.model_validate(fields)


@pytest.fixture
def resident() -> ResidentRegistered:
    """A valid police registration."""
    return make_resident()


# --- PostgreSQL (running on this machine; CI must not silently skip it) ------------------------

POSTGRES_URL = os.environ.get("XGW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards.

    Outside CI an unreachable server skips the PostgreSQL half of the suites, with the reason
    shown; in CI (``CI`` set) it fails, because the audit store must be tested on both.
    """
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    name = f"t_{uuid.uuid4().hex}"
    with admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


# --- the real broker -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One embedded Tansu broker for the whole test session, stopped even when tests fail."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[ApacheKafka]:
    """One Apache Kafka for the session, with compose's topics, SCRAM users and ACLs.

    Needs Java and Maven: skipped with the reason without them, failed instead with ``CI`` set.
    """
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


@dataclass(frozen=True)
class BrokerUnderTest:
    """A broker an integration suite runs on, and the connection settings its tests use."""

    name: str  # "embedded" or "apache_kafka"
    bootstrap_servers: str
    connection: dict[str, Any]  # Settings fields: on Apache Kafka, SASL as its super user


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("apache_kafka", id="apache_kafka", marks=pytest.mark.apache_kafka),
    ],
)
def any_broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    """Each broker in turn: the module's tests run on the embedded one, then on Apache Kafka.

    On Apache Kafka the tests connect as compose's super user ``admin`` (SASL PLAIN), so each
    module keeps a topic prefix of its own; the per-agency ACLs are tests/apache_kafka's.
    """
    if request.param == "embedded":
        embedded: EmbeddedBroker = request.getfixturevalue("broker")
        return BrokerUnderTest("embedded", embedded.bootstrap_servers, {})
    kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
    return BrokerUnderTest("apache_kafka", kafka.bootstrap_servers, admin_connection())


@pytest.fixture
def group_factory() -> Callable[[str], str]:
    """Unique consumer group names, so tests never share committed offsets."""
    return lambda name="g": f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def topic_factory(
    broker: EmbeddedBroker,
) -> AsyncIterator[Callable[..., asyncio.Future[str]]]:
    """Create uniquely named topics on the real broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()

    async def create(name: str = "t", partitions: int = 1) -> str:
        topic = f"{name}-{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        return topic

    try:
        yield create  # type: ignore[misc]
    finally:
        await admin.close()
