"""Creating the exchange's topics on the broker (idempotent)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from gateway.errors import BrokerError
from gateway.settings import Settings


async def ensure_topics(settings: Settings, agencies: tuple[str, ...]) -> list[str]:
    """Create every missing topic of the exchange; return the names created."""
    admin = AIOKafkaAdminClient(**settings.kafka_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in settings.topics.all_for(agencies) if t not in existing]
        if missing:
            new = [
                NewTopic(t, settings.topic_partitions, settings.topic_replication_factor)
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(new)
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {settings.bootstrap_servers}: {exc}") from exc
    else:
        return missing
    finally:
        await admin.close()
