"""Creating the exchange's topics on the broker (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from connectors.transport import connection_failure
from gateway.errors import BrokerError
from gateway.settings import Settings

_DESCRIBE_WAIT_S = 10.0  # for topics just created to have their partitions


async def ensure_topics(settings: Settings, agencies: tuple[str, ...]) -> list[str]:
    """Create every missing topic of the exchange; return the names created."""
    admin = AIOKafkaAdminClient(**settings.kafka_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
    except KafkaError as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise BrokerError(await connection_failure(settings.kafka_options())) from exc
    try:
        existing = set(await admin.list_topics())
        topics = settings.topics
        missing = [t for t in [*topics.all_for(agencies), topics.state] if t not in existing]
        if missing:
            new = [
                NewTopic(
                    t,
                    settings.topic_partitions,
                    settings.topic_replication_factor,
                    # The state changelog keeps the latest value per key, forever.
                    topic_configs={"cleanup.policy": "compact"} if t == topics.state else {},
                )
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(new)
        ingress = [topics.ingress(a) for a in agencies]
        described = await _described(admin, [*ingress, topics.state])
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {settings.bootstrap_servers}: {exc}") from exc
    else:
        _check_partitions(described, settings.topic_partitions)
        return missing
    finally:
        await admin.close()


async def _described(admin: AIOKafkaAdminClient, names: list[str]) -> list[dict[str, Any]]:
    """The topics as described once every one has its partitions (or after the wait).

    Apache Kafka answers a description right after the creation with no partitions yet (error
    3, unknown topic, until the controller's metadata reaches the broker).
    """
    deadline = time.monotonic() + _DESCRIBE_WAIT_S
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        settled = all(t.get("error_code", 0) == 0 and t.get("partitions") for t in described)
        if settled or time.monotonic() >= deadline:
            return described
        await asyncio.sleep(0.1)


def _check_partitions(described: list[dict[str, Any]], expected: int) -> None:
    """Every ingress topic and the state changelog have ``XGW_TOPIC_PARTITIONS`` partitions.

    The worker's state is partitioned like the ingress topics, and the group gives the same
    partition number of every ingress topic to one worker; topics of other sizes would let two
    workers write the same state partition.
    """
    for topic in described:
        count = len(topic.get("partitions") or ())
        if count != expected:
            raise BrokerError(
                f"topic {topic.get('topic')} has {count} partitions, XGW_TOPIC_PARTITIONS is "
                f"{expected}: every ingress topic and the state topic must have the same count"
            )
