"""Running a gateway worker process: topics, metrics endpoint, faust worker."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import faust

from gateway.app import build_worker
from gateway.kafka_admin import ensure_topics
from gateway.logs import configure_logging, get_logger
from gateway.metrics import GatewayMetrics, serve_metrics
from gateway.settings import Settings
from schemas.registry import REGISTRY

log = get_logger("xgw.worker")


def run_worker(settings: Settings) -> None:
    """Run one gateway worker until SIGINT or SIGTERM."""
    configure_logging(settings.log_level, settings.log_format)
    metrics = GatewayMetrics(REGISTRY.types())
    with tempfile.TemporaryDirectory(prefix="xgw-faust-") as data_dir:
        wired = build_worker(settings, metrics, Path(data_dir))
        asyncio.run(ensure_topics(settings, wired.processor.pipeline.agencies))
        server = serve_metrics(metrics, settings.metrics_host, settings.metrics_port)
        log.info("worker starting", metrics_url=server.url, settings=settings.masked())
        worker = faust.Worker(
            wired.app, loglevel=settings.log_level, quiet=True, override_logging=False
        )
        worker.execute_from_commandline()
