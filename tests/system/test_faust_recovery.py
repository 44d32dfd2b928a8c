"""faust-streaming after SIGKILL: a forward agent with a changelogged table, killed and restarted.

Stock faust 0.15 resumes the stream partitions before it seeks them to their committed offsets
(gateway/monitor/recovery.py says how that loses records or stops the commits). The project's
``SeekBeforeResumeRecovery`` must lose nothing and commit every partition up to its end after
every restart, on both brokers.

``XGW_FAUST_RUNS`` sets the runs per broker (default 2); ``XGW_FAUST_RECOVERY=stock`` runs the
same test on faust's own recovery, to measure how often it fails (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway.lab.processes import ChildProcess
from gateway.monitor.recovery import seek_to_committed
from gateway.settings import Settings, settings_env
from tests.conftest import BrokerUnderTest
from tests.support import faust_forward as fwd

pytestmark = pytest.mark.asyncio(loop_scope="module")
RUNS = int(os.environ.get("XGW_FAUST_RUNS", "2"))
STOCK = os.environ.get("XGW_FAUST_RECOVERY") == "stock"
PER_TOPIC = 500
WAIT_S = 120.0


async def _produce(
    options: dict[str, object], prefix: str
) -> tuple[dict[bytes, tuple[TopicPartition, int]], dict[TopicPartition, int]]:
    """Distinct values on every input partition; where each went, and each partition's end."""
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=False)
    await producer.start()
    values: dict[bytes, tuple[TopicPartition, int]] = {}
    ends: dict[TopicPartition, int] = {}
    try:
        for topic in fwd.input_topics(prefix):
            for n in range(PER_TOPIC):
                value = f"{topic}:{n}".encode()
                sent = await producer.send(topic, value, key=f"k{n}".encode())
                meta = await sent
                tp = TopicPartition(topic, meta.partition)
                values[value] = (tp, meta.offset)
                ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return values, ends


async def _read_output(options: dict[str, object], topic: str, seen: Counter[bytes]) -> None:
    consumer = AIOKafkaConsumer(
        topic, **options, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        async for record in consumer:
            seen[record.value or b""] += 1
    finally:
        await consumer.stop()


async def _committed(
    options: dict[str, object], prefix: str, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The group's committed offset of every input partition (0 when none)."""
    consumer = AIOKafkaConsumer(**options, group_id=fwd.group(prefix), enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) or 0 for tp in ends}
    finally:
        await consumer.stop()


def _behind(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> list[str]:
    """The input partitions whose committed offset is short of their end."""
    return [
        f"{tp.topic}:{tp.partition} {committed[tp]}/{end}"
        for tp, end in ends.items()
        if committed[tp] < end
    ]


def _missing(values: dict[bytes, tuple[TopicPartition, int]], seen: Counter[bytes]) -> list[str]:
    """Per input partition, how many records the output lacks and their offset range."""
    offsets: dict[TopicPartition, list[int]] = {}
    for value, (tp, offset) in values.items():
        if value not in seen:
            offsets.setdefault(tp, []).append(offset)
    return [
        f"{tp.topic}:{tp.partition} {len(o)} in {min(o)}..{max(o)}"
        for tp, o in sorted(offsets.items())
    ]


def _log_excerpt(path: Path, lines: int = 60) -> str:
    """Warnings, recovery milestones and the last ``consumer-state`` lines of an agent's log."""
    if not path.exists():
        return "(no log)"
    text = path.read_text("utf-8", "replace").splitlines()
    marks = (
        "WARN",
        "ERROR",
        "Seek",
        "Dropped",
        "Restore complete",
        "Worker ready",
        "rebalanc",
        "Assigned",
        "Revok",
        "Traceback",
    )
    picked = [line for line in text if any(m in line for m in marks)]
    state = [line for line in text if "consumer-state" in line][-fwd.TOPICS * fwd.PARTITIONS :]
    return "\n".join([*picked[-lines:], "-- last consumer-state --", *state])


def _agent(settings: Settings, prefix: str, log: Path) -> ChildProcess:
    child = ChildProcess(log)
    argv = [sys.executable, "-m", "tests.support.faust_forward"]
    argv += ["--bootstrap-servers", settings.bootstrap_servers, "--prefix", prefix]
    child.start([*argv, *(["--stock"] if STOCK else [])], {**os.environ, **settings_env(settings)})
    return child


@pytest.mark.parametrize("run", range(RUNS))
async def test_a_killed_forward_agent_loses_nothing_and_commits_to_the_end(
    any_broker: BrokerUnderTest, tmp_path: Path, run: int
) -> None:
    """SIGKILL at a random moment, restart: every record forwarded, every partition committed."""
    prefix = f"ff{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=any_broker.bootstrap_servers, **any_broker.connection)
    options = settings.kafka_options()
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        topics = [*fwd.input_topics(prefix), fwd.output_topic(prefix)]
        await admin.create_topics([NewTopic(t, fwd.PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()
    values, ends = await _produce(options, prefix)
    seen: Counter[bytes] = Counter()
    reader = asyncio.create_task(_read_output(options, fwd.output_topic(prefix), seen))
    kill_at = random.Random(run).randrange(50, len(values) - 200)
    first = _agent(settings, prefix, tmp_path / "first.log")
    second: ChildProcess | None = None
    try:
        deadline = time.monotonic() + WAIT_S
        while len(seen) < kill_at and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.05)
        assert len(seen) >= kill_at, f"the agent forwarded {len(seen)} records: {first.tail()}"
        first.kill()
        second = _agent(settings, prefix, tmp_path / "second.log")
        deadline = time.monotonic() + WAIT_S
        behind = ["not checked"]
        while time.monotonic() < deadline:
            if values.keys() <= seen.keys():
                behind = _behind(await _committed(options, prefix, ends), ends)
                if not behind:
                    break
            await asyncio.sleep(0.5)
        missing = _missing(values, seen)
        if missing or behind:
            behind = _behind(await _committed(options, prefix, ends), ends)
            pytest.fail(
                f"kill at {kill_at} forwarded; output missing (per partition): {missing}; "
                f"committed/end short: {behind}\n--- second agent ({tmp_path}) ---\n"
                f"{_log_excerpt(tmp_path / 'second.log')}",
                pytrace=False,
            )
    finally:
        first.kill()
        if second is not None:
            second.stop(15)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_the_recovery_seeks_a_partition_never_committed_back_to_its_start(
    any_broker: BrokerUnderTest,
) -> None:
    """Read past, not committed: aiokafka's own seek leaves it there; the recovery's seek does not.

    faust fetches during a rebalance and drops what it fetched; a partition without a committed
    offset must then be read again from where a new member starts, not from past those records.
    """
    prefix = f"fs{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=any_broker.bootstrap_servers, **any_broker.connection)
    options = settings.kafka_options()
    topic = f"{prefix}.in"
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**options, acks="all")
    await producer.start()
    try:
        for n in range(10):
            for partition in (0, 1):
                await producer.send_and_wait(topic, b"%d" % n, partition=partition)
    finally:
        await producer.stop()
    committed, fresh = TopicPartition(topic, 0), TopicPartition(topic, 1)
    client = AIOKafkaConsumer(
        **options, group_id=f"{prefix}-group", enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await client.start()
    try:
        client.assign([committed, fresh])
        await client.seek_to_beginning(committed, fresh)
        await client.commit({committed: 4})
        read = 0
        while read < 20:
            batches = await client.getmany(timeout_ms=2000)
            assert batches, f"read {read} of 20 records"
            read += sum(len(records) for records in batches.values())
        await client.seek_to_committed()
        stock = {tp: await client.position(tp) for tp in (committed, fresh)}
        found = await seek_to_committed(client, [committed, fresh], "earliest")
        ours = {tp: await client.position(tp) for tp in (committed, fresh)}
    finally:
        await client.stop()
    assert stock == {committed: 4, fresh: 10}  # aiokafka's: the uncommitted one stays past
    assert found == {committed: 4, fresh: None}
    assert ours == {committed: 4, fresh: 0}
