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
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {settings.bootstrap_servers}: {exc}") from exc
    else:
        return missing
    finally:
        await admin.close()
