"""Running a gateway worker process: topics, metrics endpoint, faust worker."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import faust

from gateway.app import BatchProcessor, build_app, build_pipeline, utcnow
from gateway.kafka_admin import ensure_topics
from gateway.logs import configure_logging, get_logger
from gateway.metrics import GatewayMetrics, serve_metrics
from gateway.settings import Settings
from schemas.registry import REGISTRY

log = get_logger("xgw.worker")


def run_worker(settings: Settings) -> None:
    """Run one gateway worker until SIGINT or SIGTERM."""
    configure_logging(settings.log_level, settings.log_format)
    pipeline = build_pipeline(settings)
    asyncio.run(ensure_topics(settings, pipeline.agencies))
    metrics = GatewayMetrics(REGISTRY.types())
    server = serve_metrics(metrics, settings.metrics_host, settings.metrics_port)
    log.info("worker starting", metrics_url=server.url, settings=settings.masked())
    processor = BatchProcessor(pipeline, metrics, utcnow)
    with tempfile.TemporaryDirectory(prefix="xgw-faust-") as data_dir:
        app = build_app(settings, processor, Path(data_dir))
        worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
        worker.execute_from_commandline()
