"""The embedded broker: starts on a free port, answers Kafka, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gateway.errors import BrokerError
from gateway.lab.broker import EmbeddedBroker, probe_metadata


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split()[2] != "Z"


def test_session_broker_answers_metadata(broker: EmbeddedBroker) -> None:
    """The shared session broker answers a Kafka metadata request on its loopback port."""
    assert broker.host == "127.0.0.1"
    assert probe_metadata(broker.bootstrap_servers)


def test_stop_ends_the_process_and_is_idempotent() -> None:
    """Stopping terminates the broker process; stopping again is harmless."""
    running = EmbeddedBroker()
    running.start()
    pid = running.pid
    assert pid is not None
    running.stop()
    running.stop()
    assert not _alive(pid)
    assert not probe_metadata(running.bootstrap_servers, timeout=0.5)


def test_broker_dies_with_a_killed_parent() -> None:
    """A SIGKILLed parent leaves no orphan broker behind (PR_SET_PDEATHSIG)."""
    script = (
        "from gateway.lab.broker import EmbeddedBroker; import time, sys\n"
        "b = EmbeddedBroker(); b.start(); print(b.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen(  # noqa: S603 - our interpreter, fixed script
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    broker_pid = int(parent.stdout.readline())
    assert _alive(broker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(broker_pid)


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker binary that cannot be found is reported as a BrokerError, not a traceback."""
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="binary not found"):
        EmbeddedBroker().start()


def test_a_busy_port_is_refused_not_reported_ready() -> None:
    """Another process listening on the port would answer the probe: refuse before starting."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerError, match=f"127.0.0.1:{port}: address already in use"):
            EmbeddedBroker(port=port).start()
