"""faust-streaming's producer flush, fixed: it returns only when every buffered record is sent.

A table write (``table[key] += 1``) cannot await, so faust puts its changelog record in the
producer's buffer (``ProducerBuffer``, ``faust/transport/producer.py``), and a background task
hands the records to aiokafka one by one. Before faust commits an offset, and when a rebalance
revokes partitions, it flushes the producer: ``ProducerBuffer.flush`` and then aiokafka's own
``flush``. faust-streaming 0.15's ``ProducerBuffer.flush`` is not complete in two ways:

- it returns as soon as no record left the buffer for 0.1 s, with records still in it (a send
  waits longer than that whenever aiokafka's accumulator is full, which is when faust logs
  "producer buffer full");
- it counts only the records still queued, not the one the background task has taken out and is
  handing to aiokafka, so that one is in neither the buffer nor aiokafka's accumulator when
  aiokafka's ``flush`` looks.

Either way an offset is committed, or a rebalance reads a changelog's end, while changelog
records of what was counted before it are still unsent. A crash then loses counts whose input
is committed; a member that keeps a partition across a rebalance replays the changelog up to
that end over its own newer values, and the counts it goes on from are short. (The monitor's
two-monitor restart test still misses counts with this fix in place, at the same rate as
before: this is a real gap, but not the one that test finds; docs/monitor.md.)

:class:`CompleteFlushBuffer` counts the record being handed over and waits until the buffer is
empty and nothing is being handed over; :func:`install` puts it in place of the app producer's
buffer before the app starts. Upstream it is the same change in ``ProducerBuffer`` itself.
"""

from __future__ import annotations

import asyncio

import faust
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage

WAKE_SECONDS = 0.1  # how often a waiting flush looks at the buffer's state again


class CompleteFlushBuffer(ProducerBuffer):
    """faust's producer buffer, with a flush that waits for every record it holds."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.handing_over = 0  # records taken out of the queue, not yet in aiokafka's hands

    async def _send_pending(self, fut: FutureMessage) -> None:
        # Called by faust's ``_handle_pending`` right after it takes ``fut`` out of the queue,
        # with no await in between, so a record is always either queued or counted here.
        self.handing_over += 1
        try:
            await super()._send_pending(fut)
        finally:
            self.handing_over -= 1  # faust's _handle_pending sets message_sent right after

    async def flush(self) -> None:
        """Wait until every record put in the buffer so far is handed to aiokafka.

        Raises RuntimeError, as faust's does, when the buffer stops with records in it: the
        caller (a commit) must not go on as if they were sent.
        """
        while self.size or self.handing_over:
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=WAKE_SECONDS)
            except TimeoutError:
                continue  # a slow send: look again; faust's own flush gave up here


def install(app: faust.App) -> CompleteFlushBuffer:
    """Give ``app``'s producer a :class:`CompleteFlushBuffer` (before the app starts)."""
    producer = app.producer
    buffer = CompleteFlushBuffer(loop=producer.loop, beacon=producer.beacon)
    buffer.app = app
    producer.buffer = buffer  # faust's Producer made its own in __init__; not started yet
    return buffer
