"""The composition root's parts: the pipeline from settings, and the batch writer.

Nothing here runs at import time or touches Kafka; :mod:`gateway.runtime.worker` runs a worker with
them, and the benchmark and tools build pipelines with :func:`memory_pipeline`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka.errors import KafkaError

from gateway.clock import Clock
from gateway.core.envelope import Limits
from gateway.core.pipeline import Decision, IngressRecord, Pipeline, PipelineConfig
from gateway.core.policy import load_policy
from gateway.core.records import OutRecord
from gateway.core.replay import ReplayWindow
from gateway.logs import get_logger
from gateway.names import GATEWAY_OWNER
from gateway.runtime.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.trust.ca import load_signing_key
from gateway.trust.x509 import X509TrustStore
from schemas.registry import REGISTRY

log = get_logger("xgw.worker")


def pipeline_config(
    settings: Settings,
    trust: X509TrustStore,
    key_partition: Callable[[bytes], int] | None = None,
) -> PipelineConfig:
    """Everything the decision depends on, loaded from settings: keys, policy, limits."""
    return PipelineConfig(
        topics=settings.topics,
        trust=trust,
        registry=REGISTRY,
        policy=load_policy(settings.policy_file, REGISTRY),
        gateway_key=load_signing_key(settings.pki_dir, GATEWAY_OWNER),
        max_record_bytes=settings.max_record_bytes,
        limits=Limits(settings.max_json_depth, settings.max_string_chars),
        max_event_age=timedelta(seconds=settings.max_event_age_seconds),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        key_partition=key_partition,
    )


def memory_pipeline(settings: Settings) -> Pipeline:
    """A pipeline whose replay window lives in memory (benchmarks, tools, tests)."""
    window = ReplayWindow(
        timedelta(seconds=settings.replay_window_seconds), settings.replay_max_entries
    )
    return Pipeline(
        pipeline_config(settings, X509TrustStore.from_directory(settings.pki_dir)), window
    )


# Queues records to write, in order; each returned future resolves when the broker
# acknowledges what it covers (one future may cover many records).
Sender = Callable[[list[OutRecord]], Awaitable[list["asyncio.Future[Any]"]]]


@dataclass
class BatchProcessor:
    """Runs the pipeline over a batch and writes all outputs before the batch is acknowledged."""

    pipeline: Pipeline
    metrics: GatewayMetrics
    clock: Clock
    retry_delay: float = 0.5
    # Extra records to write with the batch's outputs (the state changelog), taken after deciding.
    extra_outputs: Callable[[], list[OutRecord]] = list

    async def process(self, records: Sequence[IngressRecord], send: Sender) -> list[Decision]:
        """Decide every record, write every output, wait for the broker to acknowledge them."""
        started = time.perf_counter()
        now = self.clock()
        decisions = self.pipeline.decide_batch(records, now)
        await self.write([o for d in decisions for o in d.outputs], send)
        acked_at = time.time()
        rejected: Counter[str] = Counter()
        each = log.isEnabledFor(logging.DEBUG)
        for decision in decisions:
            self.metrics.observe(decision, acked_at)
            if not decision.accepted:
                rejected[decision.reason.value if decision.reason else "unknown"] += 1
                if each:
                    log.debug(
                        "rejected",
                        agency=decision.agency,
                        event_id=decision.event_id,
                        reason=decision.reason,
                        detail=decision.detail,
                    )
        if rejected:
            # One line per batch: a flood of bad records must not become a flood of log lines
            # (each record's reason and detail are in its dead letter and receipt).
            log.info("rejected", records=len(records), by_reason=dict(rejected))
        self.metrics.batch_size.observe(len(records))
        self.metrics.processing.observe(time.perf_counter() - started)
        return decisions

    async def write(self, outputs: list[OutRecord], send: Sender) -> None:
        """Write ``outputs`` and the pending state records; return once all are acknowledged."""
        outputs = [*outputs, *self.extra_outputs()]
        delay = self.retry_delay
        while True:
            try:
                await asyncio.gather(*await send(outputs))
            except KafkaError as exc:
                if not exc.retriable:
                    raise  # writing again would fail again: stop rather than spin
                # Nothing is acknowledged upstream until every output is written, so writing
                # the whole batch again is safe; duplicates are removed by the agency client.
                self.metrics.output_retries.inc()
                log.warning("outputs not acknowledged; retrying", error=repr(exc), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                return
