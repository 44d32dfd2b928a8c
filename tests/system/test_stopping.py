"""Stopping: one Ctrl-C or SIGTERM ends a demo, a worker or a monitor in bounded time, nothing left.

The demo runs as it does in a terminal: in its own process group, which the test sends SIGINT
(what the terminal does on Ctrl-C). Its children run in their own sessions and are stopped by
the demo in order; none may be left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from gateway.lab.broker import EmbeddedBroker
from gateway.lab.processes import MonitorProcess, WorkerProcess
from gateway.runtime.stopping import STOP_GRACE_SECONDS
from tests.conftest import Pki
from tests.support.harness import exchange_settings


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def test_one_ctrl_c_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--duration", "60"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, like a terminal's foreground job
        env={k: v for k, v in os.environ.items() if not k.startswith("XGW_")},
    )
    assert demo.stderr is not None
    seen = b""
    deadline = time.monotonic() + 120
    while b"worker ready" not in seen and time.monotonic() < deadline:
        chunk = os.read(demo.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    assert b"worker ready" in seen, seen.decode(errors="replace")[-2000:]
    started = _descendants(demo.pid)
    assert len(started) >= 3  # the broker, the worker, the audit writer (and the monitor)
    sent = time.monotonic()
    os.killpg(demo.pid, signal.SIGINT)
    _, rest = demo.communicate(timeout=30)
    took = time.monotonic() - sent
    lines = [line for line in rest.decode().splitlines() if not line.startswith("life ")]
    assert demo.returncode == 130, rest.decode()
    assert lines == ["xgw: interrupted"], rest.decode()
    assert took < 15, took
    time.sleep(0.5)
    assert [pid for pid in started if _alive(pid)] == []


def test_sigterm_stops_a_worker_whose_broker_is_gone(pki: Pki, tmp_path: Path) -> None:
    """Closing the Kafka clients waits for a broker that is gone: the grace period ends it."""
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    settings = exchange_settings(bootstrap, pki.directory, f"st{uuid.uuid4().hex[:8]}")
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        asyncio.run(worker.wait_ready(60))
        broker.stop()
        assert worker.pid is not None
        sent = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)
        while worker.running and time.monotonic() - sent < STOP_GRACE_SECONDS + 10:
            time.sleep(0.1)
        took = time.monotonic() - sent
        assert not worker.running, "the worker outlived its grace period"
        assert took < STOP_GRACE_SECONDS + 5, took
    finally:
        worker.stop()
        broker.stop()


def test_one_ctrl_c_stops_a_monitor_and_sigterm_one_whose_broker_is_gone(
    pki: Pki, tmp_path: Path
) -> None:
    """Xgw monitor: SIGINT stops it cleanly in seconds; with the broker gone, within the grace."""
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    settings = exchange_settings(bootstrap, pki.directory, f"sm{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(update={"monitor_app_id": f"{settings.topic_prefix}-monitor"})
    monitors = [MonitorProcess(settings, tmp_path / f"monitor-{n}.log") for n in range(2)]
    try:
        for monitor in monitors:
            monitor.start()
            asyncio.run(monitor.wait_ready(90))
        first, second = monitors
        assert first.pid is not None
        sent = time.monotonic()
        os.kill(first.pid, signal.SIGINT)
        while first.running and time.monotonic() - sent < STOP_GRACE_SECONDS + 10:
            time.sleep(0.1)
        assert not first.running
        assert time.monotonic() - sent < STOP_GRACE_SECONDS, "a clean stop took the grace period"
        assert "monitor stopped" in first.tail()
        broker.stop()
        assert second.pid is not None
        sent = time.monotonic()
        os.kill(second.pid, signal.SIGTERM)
        while second.running and time.monotonic() - sent < STOP_GRACE_SECONDS + 10:
            time.sleep(0.1)
        assert not second.running, "the monitor outlived its grace period"
        assert time.monotonic() - sent < STOP_GRACE_SECONDS + 5
    finally:
        for monitor in monitors:
            monitor.stop()
        broker.stop()
