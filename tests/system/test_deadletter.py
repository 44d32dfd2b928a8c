"""Dead letters listed and replayed through the real broker, by the API and by the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from gateway.lab.broker import EmbeddedBroker
from gateway.ops.deadletter import (
    Filter,
    read_dead_letters,
)
from gateway.reasons import ReasonCode
from gateway.settings import Settings
from tests.support.deadletters import ORIGINAL_HEADERS, PAYLOAD, dead_letter_record


async def _deadletter(
    settings: Settings, topic: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XGW_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "XGW_TOPIC_PREFIX": settings.topic_prefix,
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "deadletter", *args, "--topic", topic],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_list_and_replay_through_the_broker(
    broker: EmbeddedBroker, topic_factory: Callable[..., asyncio.Future[str]]
) -> None:
    """Dead letters are listed by reason and replayed into their ingress topic, headers restored."""
    prefix = f"dl{os.urandom(4).hex()}"
    settings = Settings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix)
    deadletters = await topic_factory("deadletter", partitions=2)
    ingress = await topic_factory(f"{prefix}.ingress.police")
    agency = settings.topics.agency_of_ingress(ingress)
    assert agency is not None
    records = [
        dead_letter_record(ingress=ingress, offset=1, key=b"k1", topic=deadletters),
        dead_letter_record(
            ReasonCode.BAD_SIGNATURE, ingress=ingress, offset=2, key=b"k2", topic=deadletters
        ),
        dead_letter_record(ingress=ingress, offset=3, key=b"k3", event_id=None, topic=deadletters),
        dead_letter_record(ingress=f"{prefix}.deliver.health", offset=4, topic=deadletters),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for partition, record in enumerate(records):
            await producer.send_and_wait(
                record.topic,
                record.value,
                key=record.key,
                headers=list(record.headers),
                partition=partition % 2,
            )
    finally:
        await producer.stop()

    revoked = await read_dead_letters(settings, deadletters, Filter(reason="revoked_certificate"))
    assert sorted(f.letter.ingress_offset or 0 for f in revoked) == [1, 3, 4]
    assert len(await read_dead_letters(settings, deadletters, Filter(agency=agency))) == 3
    assert len(await read_dead_letters(settings, deadletters, Filter(), limit=2)) == 2

    listed = await _deadletter(
        settings, deadletters, "list", "--reason", "revoked_certificate", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["ingress_offset"] for r in rows) == [1, 3, 4]
    assert "079190012345" not in listed.stdout

    dry = await _deadletter(
        settings, deadletters, "replay", "--reason", "revoked_certificate", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1] == (
        "would replay 2 dead letters; skipped 1 without an ingress topic of this exchange "
        "or a whole copy"
    )
    assert await read_dead_letters(settings, ingress, Filter()) == []

    replayed = await _deadletter(
        settings, deadletters, "replay", "--reason", "revoked_certificate", "--to-ingress"
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith("replayed 2 dead letters to their ingress topics")
    back = await read_dead_letters(settings, ingress, Filter())
    assert sorted((f.key, f.value, f.headers) for f in back) == [
        (b"k1", PAYLOAD, ORIGINAL_HEADERS),
        (b"k3", PAYLOAD, ORIGINAL_HEADERS),
    ]
