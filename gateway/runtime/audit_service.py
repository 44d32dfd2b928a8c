"""The audit writer's process: consume ``xgw.audit``, append through :class:`AuditWriter`, commit.

Offsets are committed only after the store has appended the batch, signed what is due, and the
signed checkpoints were published on ``xgw.audit.checkpoints``, so a SIGKILL at any point loses
nothing and doubles nothing (the writer drops repeats, and publishes its head again at start).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.audit.store import open_store
from gateway.audit.writer import AuditWriter, load_subject_secret
from gateway.errors import BrokerError
from gateway.logs import configure_logging, get_logger
from gateway.names import GATEWAY_OWNER
from gateway.runtime.stopping import stop_on_signals
from gateway.settings import Settings
from gateway.trust.ca import load_signing_key
from gateway.trust.timestamp import TsaClient, TsaTrust

log = get_logger("xgw.audit")
# One key: every record lands in one partition, so agencies read them in signing order.
CHECKPOINT_KEY = b"audit-checkpoint"


def build_writer(settings: Settings) -> AuditWriter:
    """The writer for ``settings``: its store, subject key, the gateway's signing key, its TSA."""
    tsa = None
    if settings.audit_tsa_url is not None and settings.audit_tsa_cafile is not None:
        tsa = TsaClient(
            settings.audit_tsa_url,
            TsaTrust.from_pem_file(settings.audit_tsa_cafile),
            settings.audit_tsa_timeout_seconds,
        )
    return AuditWriter(
        store=open_store(settings.audit_store),
        secret=load_subject_secret(settings.audit_key_file),
        key=load_signing_key(settings.pki_dir, GATEWAY_OWNER, embed=True),
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_seconds=settings.audit_checkpoint_seconds,
        publish_seconds=settings.audit_publish_seconds,
        tsa=tsa,
    )


async def consume(settings: Settings, writer: AuditWriter, stop: asyncio.Event) -> None:
    """Feed ``xgw.audit`` into ``writer`` until ``stop`` is set; commit after each append."""
    consumer = AIOKafkaConsumer(
        settings.topics.audit,
        **settings.consumer_options(),
        group_id=settings.audit_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_seconds * 1000),
    )
    producer = AIOKafkaProducer(
        **settings.kafka_options(),
        acks="all",
        enable_idempotence=False,  # the embedded broker has no idempotent producer
        request_timeout_ms=15_000,
    )
    try:
        await producer.start()
        await consumer.start()
        log.info(
            "audit writer started",
            topic=settings.topics.audit,
            store=settings.audit_store,
            tsa=settings.audit_tsa_url or "none",
        )
        await _publish(settings, writer, producer)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [r.value for batch in batches.values() for r in batch if r.value]
            if records:
                added = await asyncio.to_thread(writer.write, records)
                log.info("audit entries appended", received=len(records), added=added)
                await _publish(settings, writer, producer)
                await consumer.commit()
            else:
                await asyncio.to_thread(writer.maybe_checkpoint)
                await _publish(settings, writer, producer)
    except KafkaError as exc:
        raise BrokerError(f"audit writer lost the broker: {exc!r}") from exc
    finally:
        await consumer.stop()
        await producer.stop()


async def _publish(settings: Settings, writer: AuditWriter, producer: AIOKafkaProducer) -> None:
    """Send the checkpoints the writer signed, in order, and note the last one as published."""
    if not writer.outbox:
        return
    records, writer.outbox = writer.outbox, []
    for record in records:
        await producer.send_and_wait(
            settings.topics.checkpoints, record.encode(), key=CHECKPOINT_KEY
        )
    await asyncio.to_thread(writer.published, records[-1])
    last = records[-1].checkpoint
    log.info("audit checkpoint published", seq=last.seq, root=last.root, count=len(records))


def run_audit_writer(settings: Settings) -> None:
    """Run the writer until SIGINT or SIGTERM."""
    configure_logging(settings.log_level, settings.log_format)
    writer = build_writer(settings)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop, "audit writer")
        await consume(settings, writer, stop)

    try:
        asyncio.run(main())
    finally:
        writer.store.close()
