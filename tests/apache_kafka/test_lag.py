"""Consumer lag for real: Apache Kafka's end offsets are right, so the gauge counts the backlog.

On the embedded broker the end offset of a partition is the last batch's base offset + 1, so
``xgw_consumer_lag_records`` is wrong there (docs/operations.md); here it must equal what is
left to read, and come back to exactly 0 once the backlog is worked off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.lab.processes import scrape
from tests.apache_kafka.conftest import apache_exchange
from tests.conftest import Pki
from tests.support.apache_kafka import ApacheKafka
from tests.support.faults import all_delivered, residents, restart
from tests.support.harness import Exchange

pytestmark = pytest.mark.asyncio(loop_scope="function")
BACKLOG = 400
LAG_INTERVAL_S = 5.0  # how often a worker measures it (gateway/runtime/worker.py)


@pytest_asyncio.fixture
async def exchange(apache_kafka: ApacheKafka, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    # One record per batch, each its own transaction: slow enough to see the backlog shrink.
    async with apache_exchange(
        apache_kafka, pki, tmp_path, batch_max=1, processing_guarantee="exactly_once"
    ) as running:
        yield running


def _police_lag(url: str) -> float | None:
    """The summed lag of police's ingress partitions, or None before the first measurement."""
    lags = {k: v for k, v in scrape(url).items() if k.startswith("xgw_consumer_lag_records{")}
    police = [v for k, v in lags.items() if "topic=xgw.ingress.police" in k]
    return sum(police) if lags else None


async def test_consumer_lag_is_the_backlog_and_returns_to_zero(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A backlog published while no worker runs shows as lag, shrinks, and ends at exactly 0."""
    exchange.worker.stop()
    police = exchange.clients["police"]
    models = residents(400_000, BACKLOG)
    published = []
    for start in range(0, BACKLOG, 100):
        published += await asyncio.gather(*(police.publish(m) for m in models[start : start + 100]))
    worker = await restart(exchange, tmp_path / "lagging.log")
    samples: list[float] = []
    done = asyncio.create_task(all_delivered(exchange, published))
    while not done.done():
        lag = await asyncio.to_thread(_police_lag, worker.metrics_url)
        if lag is not None and (not samples or lag != samples[-1]):
            samples.append(lag)
        await asyncio.sleep(0.5)
    await done
    assert samples, "no lag measured while the backlog was worked off"
    assert 0 < samples[0] <= BACKLOG
    assert samples == sorted(samples, reverse=True), "the lag grew with nothing published"
    deadline = time.monotonic() + 3 * LAG_INTERVAL_S
    while time.monotonic() < deadline:
        lag = await asyncio.to_thread(_police_lag, worker.metrics_url)
        if lag == 0:
            break
        await asyncio.sleep(0.5)
    assert lag == 0
