"""Isolation by the broker: each principal may do exactly what docker-compose's ACLs grant.

Every denied operation is observed as Apache Kafka's own authorisation error (error codes 29
and 30); the ACLs are the ones compose's kafka-init script made (one source of truth with
deploy/k8s/users.yaml, which tests/deploy holds equal to it).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from gateway.names import TopicNames
from tests.apache_kafka.conftest import AGENCIES, principal_settings
from tests.conftest import Pki
from tests.support.apache_kafka import ApacheKafka
from tests.support.harness import xgw

pytestmark = pytest.mark.asyncio(loop_scope="module")
TOPICS = TopicNames("xgw")
OTHER = {"police": "health", "health": "education", "education": "land", "land": "police"}


def _writes(agency: str) -> dict[str, bool]:
    """Each topic an agency might write, and whether it may."""
    other = OTHER[agency]
    return {
        TOPICS.ingress(agency): True,
        TOPICS.ingress(other): False,
        TOPICS.deliver(agency): False,  # forging the gateway's deliveries
        TOPICS.receipts(agency): False,
        TOPICS.checkpoints: False,  # forging the audit checkpoints
        TOPICS.audit: False,
        TOPICS.deadletter: False,
    }


def _reads(agency: str) -> dict[str, bool]:
    """Each topic an agency might read (in a group of its own), and whether it may."""
    other = OTHER[agency]
    return {
        TOPICS.deliver(agency): True,
        TOPICS.receipts(agency): True,
        TOPICS.checkpoints: True,
        TOPICS.deliver(other): False,
        TOPICS.receipts(other): False,
        TOPICS.ingress(other): False,
        TOPICS.deadletter: False,
        TOPICS.audit: False,
        TOPICS.state: False,
    }


async def _write(kafka: ApacheKafka, principal: str, topic: str) -> None:
    producer = AIOKafkaProducer(
        **principal_settings(kafka, principal).kafka_options(),
        enable_idempotence=False,
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        # A tombstone for the state changelog (a value there must be the workers' own JSON:
        # they refuse to recover from anything else); keyed, since it is compacted.
        value = None if topic == TOPICS.state else b"probe"
        await producer.send_and_wait(topic, value, key=f"probe-{uuid.uuid4().hex}".encode())
    finally:
        await producer.stop()


async def _read(kafka: ApacheKafka, principal: str, topic: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        **principal_settings(kafka, principal).kafka_options(),
        group_id=group,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
    )
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.getmany(timeout_ms=2000), 30)
    finally:
        await consumer.stop()


@pytest.mark.parametrize("agency", AGENCIES)
async def test_an_agency_writes_only_its_own_ingress_topic(
    apache_kafka: ApacheKafka, agency: str
) -> None:
    """Writing anywhere else (another ingress, deliveries, receipts, checkpoints) is refused."""
    for topic, allowed in _writes(agency).items():
        if allowed:
            await _write(apache_kafka, agency, topic)
        else:
            with pytest.raises(TopicAuthorizationFailedError):
                await _write(apache_kafka, agency, topic)


@pytest.mark.parametrize("agency", AGENCIES)
async def test_an_agency_reads_only_its_deliveries_receipts_and_the_checkpoints(
    apache_kafka: ApacheKafka, agency: str
) -> None:
    """Another agency's deliveries or receipts, dead letters, audit and state are refused."""
    for topic, allowed in _reads(agency).items():
        group = f"{agency}-probe-{uuid.uuid4().hex[:6]}"
        if allowed:
            await _read(apache_kafka, agency, topic, group)
        else:
            with pytest.raises(TopicAuthorizationFailedError):
                await _read(apache_kafka, agency, topic, group)


@pytest.mark.parametrize("group", ["xgw-gateway", "xgw-audit-writer", "health-deliveries"])
async def test_an_agency_cannot_join_the_gateways_or_another_agencys_group(
    apache_kafka: ApacheKafka, group: str
) -> None:
    """Joining a group not named ``police-...`` is refused, even on police's own topic."""
    with pytest.raises(GroupAuthorizationFailedError):
        await _read(apache_kafka, "police", TOPICS.deliver("police"), group)


async def test_the_gateway_reads_and_writes_every_exchange_topic_in_its_groups(
    apache_kafka: ApacheKafka,
) -> None:
    """The gateway principal needs all of them: ingress, outputs, audit, state, checkpoints."""
    topics = [*TOPICS.all_for(AGENCIES), TOPICS.state]
    for topic in topics:
        await _write(apache_kafka, "gateway", topic)
    for group in ("xgw-gateway", "xgw-audit-writer"):
        await _read(
            apache_kafka, "gateway", TOPICS.ingress("police"), f"{group}-{uuid.uuid4().hex[:4]}"
        )


async def test_a_wrong_password_is_one_readable_line(apache_kafka: ApacheKafka, pki: Pki) -> None:
    """``xgw agency`` with a wrong password ends with one line naming the refused user."""
    settings = principal_settings(
        apache_kafka,
        "police",
        sasl_password="not-the-password",  # noqa: S106
        pki_dir=pki.directory,
    )
    result = await asyncio.to_thread(xgw, settings, "agency", "police", "--duration", "5")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"xgw: error: agency police stopped: Kafka at {apache_kafka.bootstrap_servers} refused "
        "the credentials of 'police' (SCRAM-SHA-512): check XGW_SASL_USERNAME and "
        "XGW_SASL_PASSWORD"
    )
    assert "Traceback" not in result.stderr
