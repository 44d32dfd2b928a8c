"""A faust-streaming forward agent for the recovery tests (tests/system/test_faust_recovery.py).

Four input topics of four partitions, one output topic: the agent reads every input in
``stream.take`` batches, counts them in a changelogged table and forwards each value, at least
once. Run in a child process, killed and restarted by the test::

    python -m tests.support.faust_forward --bootstrap-servers HOST:PORT --prefix P [--stock]

``--stock`` runs faust's own table recovery; the default is the project's
(gateway/monitor/recovery.py). ``XGW_SASL_*`` and ``XGW_SECURITY_PROTOCOL`` give credentials.

Every ``DUMP_EVERY_S`` the agent logs one ``consumer-state`` line per input partition that is
not yet done (faust's read, committed and acked offsets and pause state; aiokafka's position,
highwater and buffered fetch), so that a stalled run says where the records stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import faust
from faust.tables.manager import TableManager

from gateway.monitor.recovery import SeekingTableManager

TOPICS = 4
PARTITIONS = 4
DUMP_EVERY_S = 2.0
log = logging.getLogger(__name__)


def input_topics(prefix: str) -> list[str]:
    """The input topics' names."""
    return [f"{prefix}.in.{n}" for n in range(TOPICS)]


def output_topic(prefix: str) -> str:
    """The output topic's name."""
    return f"{prefix}.out"


def group(prefix: str) -> str:
    """The agent's consumer group (faust's app id)."""
    return f"{prefix}-fwd"


def make_app(bootstrap_servers: str, prefix: str, *, stock: bool) -> faust.App:
    """The forward agent's app."""
    extra: dict[str, Any] = {}
    if os.environ.get("XGW_SECURITY_PROTOCOL", "PLAINTEXT").startswith("SASL"):
        extra["broker_credentials"] = faust.SASLCredentials(
            username=os.environ["XGW_SASL_USERNAME"],
            password=os.environ["XGW_SASL_PASSWORD"],
            mechanism=os.environ["XGW_SASL_MECHANISM"],
        )
    app = faust.App(
        group(prefix),
        broker=f"kafka://{bootstrap_servers}",
        processing_guarantee="at_least_once",
        store="memory://",
        topic_replication_factor=1,
        topic_partitions=PARTITIONS,
        topic_disable_leader=True,
        table_standby_replicas=0,
        # A killed member's partitions move after the session timeout (faust's default: 60 s).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=6.0,
        broker_commit_every=50,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        TableManager=TableManager if stock else SeekingTableManager,
        **extra,
    )
    raw = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(*input_topics(prefix), **raw)
    sink = app.topic(output_topic(prefix), **raw)
    # A changelogged table, so that a restart goes through faust's table recovery. Written
    # after a take() batch, outside any one event: its partitioner picks the changelog partition.
    seen = app.Table("seen", default=int, partitions=PARTITIONS, use_partitioner=True)

    @app.agent(source)
    async def forward(stream: Any) -> None:
        async for values in stream.take(50, within=0.2):
            for value in values:
                await sink.send(value=value)
            seen["records"] += len(values)

    @app.timer(DUMP_EVERY_S)
    async def dump_consumer_state() -> None:
        _log_consumer_state(app, set(input_topics(prefix)))

    return app


def _log_consumer_state(app: faust.App, topics: set[str]) -> None:
    """One line per assigned input partition short of its highwater (read across threads)."""
    consumer: Any = app.consumer
    client: Any = getattr(consumer._thread, "_consumer", None)  # the aiokafka consumer
    assignment = client._subscription.subscription.assignment if client else None
    if assignment is None:
        log.info("consumer-state no-assignment")
        return
    records = client._fetcher._records
    for tp in sorted(assignment.tps):
        if tp.topic not in topics:
            continue
        state = assignment.state_value(tp)
        position = state.position if state.has_valid_position else None
        if position is not None and position == state.highwater and not records.get(tp):
            done = consumer._read_offset.get(tp) == position - 1
            if done and consumer._committed_offset.get(tp) == position:
                continue
        fetched = records.get(tp)
        pending = getattr(fetched, "_partition_records", None)
        acked = consumer._acked.get(tp) or []
        log.info(
            "consumer-state tp=%s:%d read=%s committed=%s acked=%d..%s gaps=%s "
            "faust_paused=%s active=%s position=%s highwater=%s fetched=%s gen=%s",
            tp.topic,
            tp.partition,
            consumer._read_offset.get(tp),
            consumer._committed_offset.get(tp),
            len(acked),
            (min(acked), max(acked)) if acked else None,
            sorted((i.begin, i.end) for i in consumer._gap.get(tp, ())),
            tp in consumer._paused_partitions,
            tp in (consumer._active_partitions or ()),
            position,
            state.highwater,
            None if fetched is None else getattr(pending, "next_fetch_offset", "exhausted"),
            app.consumer_generation_id,
        )


def main() -> None:
    """Run the agent until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--stock", action="store_true")
    args = parser.parse_args()
    app = make_app(args.bootstrap_servers, args.prefix, stock=args.stock)
    faust.Worker(app, loglevel="INFO").execute_from_commandline()


if __name__ == "__main__":
    main()
