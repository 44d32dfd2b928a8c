"""The worker's unit of work: decide, write, observe.

Each entry point decides (a batch of ingress records, the requests past their deadline, or a
sweep the caller ran on the state), writes the outputs together with the state changelog
records queued meanwhile, waits until the broker acknowledged all of them, and only then counts
the decisions in the metrics. The writer is injected (:class:`Writer`); nothing here touches
Kafka itself (:class:`gateway.runtime.producer.OutputWriter` does).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.clock import Clock
from gateway.core.pipeline import Decision, IngressRecord, Pipeline
from gateway.core.records import OutRecord
from gateway.logs import get_logger
from gateway.reasons import ReasonCode
from gateway.runtime.metrics import GatewayMetrics

log = get_logger("xgw.batch")


class Writer(Protocol):
    """Writes records in order and returns once the broker acknowledged every one."""

    async def write(self, records: list[OutRecord]) -> None:
        """Write ``records``; return when all are acknowledged."""


@dataclass
class BatchProcessor:
    """Runs the pipeline and writes all its outputs before anything is acknowledged upstream."""

    pipeline: Pipeline
    writer: Writer
    metrics: GatewayMetrics
    clock: Clock
    # The state changelog records queued since the last call, written with the outputs.
    state_outbox: Callable[[], list[OutRecord]] = list

    async def process(
        self, records: Sequence[IngressRecord], writer: Writer | None = None
    ) -> list[Decision]:
        """Decide every record, write every output, wait for the broker to acknowledge them.

        ``writer`` replaces the processor's own for this call (a partition's transaction).
        """
        started = time.perf_counter()
        decisions = self.pipeline.decide_batch(records, self.clock())
        acked_at = await self._write(decisions, writer)
        rejected: Counter[str] = Counter()
        each = log.isEnabledFor(logging.DEBUG)
        for record, decision in zip(records, decisions, strict=True):
            self.metrics.observe(decision, acked_at)
            if decision.reason is ReasonCode.INTERNAL_ERROR:
                # A fault of the gateway, not of the sender: one line each, never the payload.
                log.error(
                    "internal error; record refused alone",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    detail=decision.detail,
                )
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

    async def expire(
        self, partition: int | None = None, writer: Writer | None = None
    ) -> list[Decision]:
        """Time out the requests past their deadline: write their receipts, then count them.

        Those of every partition held, or of ``partition`` alone.
        """
        decisions = self.pipeline.expire(self.clock(), partition)
        if decisions:
            acked_at = await self._write(decisions, writer)
            for decision in decisions:
                self.metrics.observe(decision, acked_at)
        return decisions

    async def flush_state(self, writer: Writer | None = None) -> None:
        """Write the changelog records queued outside a batch (a sweep's deletions)."""
        await self._write([], writer)

    async def _write(self, decisions: list[Decision], writer: Writer | None) -> float:
        """Write the decisions' outputs and the state outbox; the time they were acknowledged."""
        outputs = [o for d in decisions for o in d.outputs]
        outputs.extend(self.state_outbox())  # taken after deciding: it holds what deciding wrote
        await (writer or self.writer).write(outputs)
        return time.time()
